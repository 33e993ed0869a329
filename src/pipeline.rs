//! The pure decision for one request, shared by `permgate check` and the proxy.
