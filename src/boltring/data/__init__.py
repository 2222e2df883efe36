"""The data plane's Python face: the C core (`_core`, built from `csrc/`), channels
over it, the MLX dtype table and the native MLX group (`_native`, built from
`native/`).  Nothing here decides which connection to use; the control plane does."""
