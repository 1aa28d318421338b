"""From a spec document (or the embedded default) to a validated Spec with its tensors."""
