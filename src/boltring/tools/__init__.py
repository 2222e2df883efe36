"""The command-line tools (`boltring ...`): doctor, preflight, status, watch, run,
and the dispatch to the rig's lab, bench and demo.  Above the transport: nothing in
`boltring` outside this package imports it."""
