/*
 * DMSC forwarding pipeline (v1model).
 *
 * One program for both roles: an SG and an SR differ only in which tables their
 * agent fills. Table, action, field and counter names are the contract with the
 * Go controller and the Go software switch; both read ids from the P4Info that
 * p4c generates from this file (p4/build/dmsc.p4info.txtpb).
 *
 * The numbers below (drop reasons, punt reasons, roles, packet-out modes) are
 * also defined in Go (package wire and package pipeline): keep them in step.
 * See p4/README.md for the walk through the pipeline.
 *
 * Tofino: nothing here needs more than exact-match tables, action selectors,
 * indexed counters and straight-line control flow, so a TNA port keeps the
 * same tables and names.
 */
#include <core.p4>
#include <v1model.p4>

typedef bit<9>   port_t;
typedef bit<128> key_t;

const port_t  CPU_PORT       = 255;
const bit<16> ETHERTYPE_DMSC = 0x88B5;
const bit<4>  DMSC_VERSION   = 1;

/* DMSC frame types. */
const bit<4> TYPE_DATA        = 0;
const bit<4> TYPE_PROBE       = 1;
const bit<4> TYPE_PROBE_REPLY = 2;
const bit<4> TYPE_CONTROL     = 3;

/* Frame lengths in bytes: Ethernet + DMSC header, probe header, minimum frame. */
const bit<32> BASE_FRAME_LEN  = 58;
const bit<32> PROBE_HDR_LEN   = 32;
const bit<32> MIN_FRAME_LEN   = 60;
const bit<32> PACKET_OUT_LEN  = 4;

/* A reflected probe starts a new journey. */
const bit<8> DEFAULT_HOP_LIMIT = 64;

/* Drop reasons: index of drop_counter; equal to wire.DropReason. */
const bit<32> DROP_NOT_DMSC          = 1;
const bit<32> DROP_MALFORMED         = 2;
const bit<32> DROP_BAD_VERSION       = 3;
const bit<32> DROP_BAD_TYPE          = 4;
const bit<32> DROP_BAD_LENGTH        = 5;
const bit<32> DROP_HOP_LIMIT         = 6;
const bit<32> DROP_PORT_UNCONFIGURED = 7;
const bit<32> DROP_SRC_GUARD         = 8;
const bit<32> DROP_NO_ROUTE          = 9;
const bit<32> DROP_FIB               = 10;
const bit<32> DROP_NO_NEXTHOP        = 11;
const bit<32> NUM_DROP_REASONS       = 16;

/* Packet-in reasons. */
const bit<16> PUNT_CONTROL = 1;
const bit<16> PUNT_TO_CPU  = 2;

/* Port roles written by port_role. */
const bit<8> ROLE_UNSET  = 0;
const bit<8> ROLE_POD    = 1;
const bit<8> ROLE_FABRIC = 2;

/* Packet-out modes. */
const bit<16> OUT_DIRECT = 0;  /* send on packet_out.egress_port as is */
const bit<16> OUT_ROUTE  = 1;  /* forward through the FIB like a received frame */

/* What the FIB decided. */
const bit<8> FWD_NONE  = 0;
const bit<8> FWD_GROUP = 1;
const bit<8> FWD_LOCAL = 2;
const bit<8> FWD_CPU   = 3;
const bit<8> FWD_DROP  = 4;

const bit<32> NUM_PORTS = 512;

@controller_header("packet_in")
header packet_in_t {
    bit<16> ingress_port;
    bit<16> reason;
}

@controller_header("packet_out")
header packet_out_t {
    bit<16> egress_port;
    bit<16> mode;
}

header ethernet_t {
    bit<48> dst_addr;
    bit<48> src_addr;
    bit<16> ether_type;
}

header dmsc_t {
    bit<4>  version;
    bit<4>  type;
    bit<8>  flags;
    bit<8>  hop_limit;
    bit<8>  qos_class;
    bit<32> flow_label;
    bit<16> payload_len;
    bit<8>  next_proto;
    bit<8>  reserved;
    key_t   dst_key;
    key_t   src_key;
}

header probe_t {
    bit<32> seq;
    bit<32> reserved;
    bit<64> t_tx;
    bit<64> t_rx;
    bit<64> t_reply;
}

struct headers_t {
    packet_out_t packet_out;
    packet_in_t  packet_in;
    ethernet_t   ethernet;
    dmsc_t       dmsc;
    probe_t      probe;
}

struct metadata_t {
    bit<8>  role;
    bit<8>  fwd;
    bit<16> group_id;
    bit<1>  from_cpu;
    bit<32> frame_len;
    bit<32> expected_len;
    /* The destination key cut at the four prefix lengths. */
    bit<96> dst_96;
    bit<64> dst_64;
    bit<32> dst_32;
}

parser DmscParser(packet_in packet, out headers_t hdr, inout metadata_t meta,
                  inout standard_metadata_t std) {
    state start {
        transition select(std.ingress_port) {
            CPU_PORT: parse_packet_out;
            default: parse_ethernet;
        }
    }
    state parse_packet_out {
        packet.extract(hdr.packet_out);
        transition parse_ethernet;
    }
    state parse_ethernet {
        packet.extract(hdr.ethernet);
        transition select(hdr.ethernet.ether_type) {
            ETHERTYPE_DMSC: parse_dmsc;
            default: accept;
        }
    }
    state parse_dmsc {
        packet.extract(hdr.dmsc);
        transition select(hdr.dmsc.version, hdr.dmsc.type) {
            (DMSC_VERSION, TYPE_PROBE): parse_probe;
            (DMSC_VERSION, TYPE_PROBE_REPLY): parse_probe;
            default: accept;
        }
    }
    state parse_probe {
        packet.extract(hdr.probe);
        transition accept;
    }
}

control DmscVerifyChecksum(inout headers_t hdr, inout metadata_t meta) {
    apply { }
}

control DmscIngress(inout headers_t hdr, inout metadata_t meta,
                    inout standard_metadata_t std) {

    counter(NUM_PORTS, CounterType.packets_and_bytes) port_rx;
    counter(NUM_DROP_REASONS, CounterType.packets_and_bytes) drop_counter;

    direct_counter(CounterType.packets_and_bytes) fib_128_counter;
    direct_counter(CounterType.packets_and_bytes) fib_96_counter;
    direct_counter(CounterType.packets_and_bytes) fib_64_counter;
    direct_counter(CounterType.packets_and_bytes) fib_32_counter;

    /* Both selectors hash the same fields, so one flow stays on one path.
     * instance_selector holds one member per local pod instance: 16,384
     * lets one SG carry a burst of 10k registrations (issue 4). */
    action_selector(HashAlgorithm.crc32, 32w4096, 32w16) nexthop_selector;
    action_selector(HashAlgorithm.crc32, 32w16384, 32w16) instance_selector;

    action drop_with(bit<32> reason) {
        drop_counter.count(reason);
        mark_to_drop(std);
    }

    action punt(bit<16> reason) {
        std.egress_spec = CPU_PORT;
        hdr.packet_in.setValid();
        hdr.packet_in.ingress_port = (bit<16>)std.ingress_port;
        hdr.packet_in.reason = reason;
    }

    /* port_role */
    action set_port_role(bit<8> role) {
        meta.role = role;
    }

    table port_role {
        key = { std.ingress_port: exact @name("port"); }
        actions = { set_port_role; @defaultonly NoAction; }
        const default_action = NoAction();
        size = NUM_PORTS;
    }

    /* src_guard: a pod sends only from the instance key SPA gave it. */
    action allow() { }

    table src_guard {
        key = {
            std.ingress_port: exact @name("port");
            hdr.dmsc.src_key: exact @name("src_key");
        }
        actions = { allow; @defaultonly NoAction; }
        const default_action = NoAction();
        size = 65536;
    }

    /* FIB actions, shared by the four tables. */
    action set_nexthop_group(bit<16> group_id) {
        meta.fwd = FWD_GROUP;
        meta.group_id = group_id;
    }

    action deliver_local(bit<16> group_id) {
        meta.fwd = FWD_LOCAL;
        meta.group_id = group_id;
    }

    action to_cpu() {
        meta.fwd = FWD_CPU;
    }

    action drop() {
        meta.fwd = FWD_DROP;
    }

    table fib_128 {
        key = { hdr.dmsc.dst_key: exact @name("dst_key"); }
        actions = { set_nexthop_group; deliver_local; to_cpu; drop; @defaultonly NoAction; }
        const default_action = NoAction();
        counters = fib_128_counter;
        size = 131072;
    }

    table fib_96 {
        key = { meta.dst_96: exact @name("dst_key"); }
        actions = { set_nexthop_group; deliver_local; to_cpu; drop; @defaultonly NoAction; }
        const default_action = NoAction();
        counters = fib_96_counter;
        size = 131072;
    }

    table fib_64 {
        key = { meta.dst_64: exact @name("dst_key"); }
        actions = { set_nexthop_group; deliver_local; to_cpu; drop; @defaultonly NoAction; }
        const default_action = NoAction();
        counters = fib_64_counter;
        size = 131072;
    }

    table fib_32 {
        key = { meta.dst_32: exact @name("dst_key"); }
        actions = { set_nexthop_group; deliver_local; to_cpu; drop; @defaultonly NoAction; }
        const default_action = NoAction();
        counters = fib_32_counter;
        size = 131072;
    }

    /* Next hops of a group: one member per fabric neighbour, weighted by replication. */
    action set_nexthop(port_t port, bit<48> dmac) {
        std.egress_spec = port;
        hdr.ethernet.dst_addr = dmac;
    }

    table nexthop {
        key = {
            meta.group_id: exact @name("group_id");
            hdr.dmsc.flow_label: selector;
            hdr.dmsc.src_key: selector;
            hdr.dmsc.dst_key: selector;
        }
        actions = { set_nexthop; }
        implementation = nexthop_selector;
        size = 65536;
    }

    /* Local instances of a service at the egress SG: pick one, write it into the key. */
    action deliver_instance(port_t port, bit<32> instance, bit<48> dmac) {
        std.egress_spec = port;
        hdr.dmsc.dst_key[31:0] = instance;
        hdr.ethernet.dst_addr = dmac;
    }

    table local_instance {
        key = {
            meta.group_id: exact @name("group_id");
            hdr.dmsc.flow_label: selector;
            hdr.dmsc.src_key: selector;
            hdr.dmsc.dst_key: selector;
        }
        actions = { deliver_instance; }
        implementation = instance_selector;
        size = 65536;
    }

    /* A probe that reached a local instance goes back the way it came. */
    action reflect_probe() {
        key_t answered = hdr.dmsc.dst_key;
        hdr.dmsc.dst_key = hdr.dmsc.src_key;
        hdr.dmsc.src_key = answered;
        hdr.dmsc.type = TYPE_PROBE_REPLY;
        hdr.dmsc.hop_limit = DEFAULT_HOP_LIMIT;
        /* BMv2 counts microseconds; the header carries nanoseconds (x1000 by shifts). */
        bit<64> us = (bit<64>)std.ingress_global_timestamp;
        bit<64> ns = (us << 10) - (us << 4) - (us << 3);
        hdr.probe.t_rx = ns;
        hdr.probe.t_reply = ns;
        bit<48> came_from = hdr.ethernet.src_addr;
        hdr.ethernet.src_addr = hdr.ethernet.dst_addr;
        hdr.ethernet.dst_addr = came_from;
        std.egress_spec = std.ingress_port;
    }

    apply {
        if (hdr.packet_out.isValid()) {
            if (hdr.packet_out.mode == OUT_DIRECT) {
                std.egress_spec = (port_t)hdr.packet_out.egress_port;
                hdr.packet_out.setInvalid();
                return;
            }
            hdr.packet_out.setInvalid();
            meta.from_cpu = 1;
            meta.frame_len = std.packet_length - PACKET_OUT_LEN;
        } else {
            port_rx.count((bit<32>)std.ingress_port);
            meta.frame_len = std.packet_length;
        }

        /* Well-formedness, in the order of wire.ParseFrame. */
        if (std.parser_error != error.NoError) {
            drop_with(DROP_MALFORMED);
            return;
        }
        if (hdr.ethernet.ether_type != ETHERTYPE_DMSC) {
            drop_with(DROP_NOT_DMSC);
            return;
        }
        if (hdr.dmsc.version != DMSC_VERSION) {
            drop_with(DROP_BAD_VERSION);
            return;
        }
        if (hdr.dmsc.type > TYPE_CONTROL) {
            drop_with(DROP_BAD_TYPE);
            return;
        }
        meta.expected_len = BASE_FRAME_LEN + (bit<32>)hdr.dmsc.payload_len;
        if (hdr.probe.isValid()) {
            meta.expected_len = meta.expected_len + PROBE_HDR_LEN;
        }
        if (meta.frame_len < meta.expected_len ||
            (meta.frame_len > meta.expected_len && meta.frame_len > MIN_FRAME_LEN)) {
            drop_with(DROP_BAD_LENGTH);
            return;
        }

        if (meta.from_cpu == 0) {
            port_role.apply();
            if (hdr.dmsc.type == TYPE_CONTROL) {
                punt(PUNT_CONTROL);
                return;
            }
            if (meta.role == ROLE_UNSET) {
                drop_with(DROP_PORT_UNCONFIGURED);
                return;
            }
            if (meta.role == ROLE_POD) {
                if (!src_guard.apply().hit) {
                    drop_with(DROP_SRC_GUARD);
                    return;
                }
            }
        }

        if (hdr.dmsc.hop_limit == 0) {
            drop_with(DROP_HOP_LIMIT);
            return;
        }
        hdr.dmsc.hop_limit = hdr.dmsc.hop_limit - 1;

        meta.dst_96 = hdr.dmsc.dst_key[127:32];
        meta.dst_64 = hdr.dmsc.dst_key[127:64];
        meta.dst_32 = hdr.dmsc.dst_key[127:96];
        meta.fwd = FWD_NONE;
        if (!fib_128.apply().hit) {
            if (!fib_96.apply().hit) {
                if (!fib_64.apply().hit) {
                    fib_32.apply();
                }
            }
        }

        if (meta.fwd == FWD_NONE) {
            drop_with(DROP_NO_ROUTE);
        } else if (meta.fwd == FWD_DROP) {
            drop_with(DROP_FIB);
        } else if (meta.fwd == FWD_CPU) {
            punt(PUNT_TO_CPU);
        } else if (meta.fwd == FWD_GROUP) {
            if (!nexthop.apply().hit) {
                drop_with(DROP_NO_NEXTHOP);
            }
        } else if (meta.fwd == FWD_LOCAL) {
            if (!local_instance.apply().hit) {
                drop_with(DROP_NO_NEXTHOP);
            } else if (hdr.dmsc.type == TYPE_PROBE) {
                reflect_probe();
                if (meta.from_cpu == 1) {
                    punt(PUNT_TO_CPU);
                }
            }
        }
    }
}

control DmscEgress(inout headers_t hdr, inout metadata_t meta,
                   inout standard_metadata_t std) {
    counter(NUM_PORTS, CounterType.packets_and_bytes) port_tx;

    apply {
        port_tx.count((bit<32>)std.egress_port);
    }
}

control DmscComputeChecksum(inout headers_t hdr, inout metadata_t meta) {
    apply { }
}

control DmscDeparser(packet_out packet, in headers_t hdr) {
    apply {
        packet.emit(hdr.packet_in);
        packet.emit(hdr.ethernet);
        packet.emit(hdr.dmsc);
        packet.emit(hdr.probe);
    }
}

V1Switch(DmscParser(), DmscVerifyChecksum(), DmscIngress(), DmscEgress(),
         DmscComputeChecksum(), DmscDeparser()) main;
