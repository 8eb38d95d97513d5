"""The documentation: README and docs/ code blocks, the site build, docstring examples,
and the optimizers of docs/write-your-own.md."""
