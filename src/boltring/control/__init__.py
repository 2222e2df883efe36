"""The control plane: which interfaces reach a peer and of what kind, the hostfile,
the path policy, the handshake, rendezvous and the peer links that stage ready
connections into the data plane.  It imports the data plane, never the tools."""
