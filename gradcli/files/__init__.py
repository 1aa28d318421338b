"""Reading what the user gives, bounded: files, stdin, .npy/.npz headers, YAML."""
