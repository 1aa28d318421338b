"""The user's own code: loading a module, calling it under guard, adapting it to a Layer."""
