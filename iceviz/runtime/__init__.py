"""The runtime every background job runs on: the job contract (start, pause, resume, cancel, status, the latest
snapshot and a bounded history) and the queue that admits jobs to the machine. Below ``training`` and ``sim``:
it knows nothing of what a job computes."""
