"""Finite-element ice-flow simulator: meshes, the SSA momentum balance, verification."""
