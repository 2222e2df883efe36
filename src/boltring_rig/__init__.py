"""The test rig, apart from the product: the network-namespace lab, the benchmark
harness and the demo.  It uses boltring like any program does; boltring never
imports it."""
