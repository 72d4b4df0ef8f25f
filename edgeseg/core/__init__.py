"""The base layer: facts and formats every other layer shares (errors, files and folders, the host,
model metadata, mask metrics, declarations and their one-line refusals). No inference, no I/O loops;
imports nothing else of edgeseg."""
