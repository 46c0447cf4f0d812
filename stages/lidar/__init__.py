"""LiDAR as DIOD-3D sees it: sweeps projected onto the camera's image grid (xMOD)."""
