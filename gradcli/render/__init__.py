"""What users read: rich tables, JSON documents, explanations and skeletons.
Only this package and cli/ import rich."""
