// Package bmv2tests proves that the DMSC controller drives an unmodified
// BMv2 (simple_switch_grpc) exactly as it drives the Go software switch: the
// committed P4 artifacts are what p4c makes of p4/dmsc.p4, the pipeline
// runs on BMv2 in network namespaces pushed and programmed by the project's
// own P4Runtime client and agent, a differential test finds no difference
// between BMv2 and the software switch that is not documented in README.md,
// and the draft's Figure 2 works on seven BMv2 switches.
//
// Each test skips with one line when what it needs is missing
// (p4c-bm2-ss, simple_switch_grpc, root); DMSC_BMV2=require turns those
// skips into failures. The package has no code of its own beyond the
// harness the tests share: network namespaces and veth pairs (Net), BMv2
// processes (BMv2), and the test's ends of links (Tap).
package bmv2tests
