#!/usr/bin/python3
"""A DMSC fabric on a mininet topology, and the Figure 2 scenario on it.

Run it through `dmsc topo mininet FILE [--target softswitch|bmv2]
[--scenario fig2] [--keep]`, which checks the prerequisites, converts the
topology file to JSON and writes run.json for this script; by hand:

    /usr/bin/python3 dmsc_mininet.py --config run.json

It needs Debian's mininet (its Python API; the kernel Open vSwitch datapath
is not used: the switches here are processes of ours) and root.

What it builds, per node of the topology: a mininet switch of a class of its
own per target, whose data interfaces are mininet veth links named
<node>-eth<port> (the link's port numbers are the topology's):

  softswitch  DmscSoftSwitch: `dmsc softswitch --p4rt 127.0.0.1:P --port
              N=iface:<node>-eth<N> ...` in the host's namespace, the links'
              delay and capacity as its egress impairments
  bmv2        DmscBMv2Switch: simple_switch_grpc in a network namespace of its
              own (it always opens Thrift on 0.0.0.0:9090), its P4Runtime on
              that namespace's loopback, relayed to 127.0.0.1:P on the host
              by socat (one socat per connection enters the namespace with
              mnexec -a)

and per pod port of an SG a mininet host h-<node>-<port> linked to it, where
pods run (`dmsc pod serve` / `dmsc pod call` on iface:h-<node>-<port>-eth0).
On the host: a domain CA and certificates (`dmsc ca`), SPA, one agent per node
(`dmsc agent`, gNMI with TLS on 127.0.0.1) and SCSC. Offloads and IPv6 are
turned off on every interface the run makes.

Cleanup: the processes this run started, by PID (SIGTERM, then SIGKILL), then
net.stop() of the network it built (its veths, its host and switch shells).
Nothing is killed by name and mininet's global cleanup (mn -c) is never run;
Mininet's fixLimits (which raises machine-wide sysctls) is skipped too.

Exit status: 0 every check passed, 1 a check failed, 2 the fabric could not
be built, 130 interrupted.
"""

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

try:
    from mininet.link import Link
    from mininet.log import setLogLevel
    from mininet.net import Mininet
    from mininet.node import Host, Switch
except ImportError as err:  # pragma: no cover - depends on the machine
    print('dmsc_mininet: mininet is not importable by %s (%s): '
          'apt-get install -y --no-install-recommends mininet' % (sys.executable, err), file=sys.stderr)
    sys.exit(2)

EXIT_PASS, EXIT_FAIL, EXIT_SETUP, EXIT_INTERRUPTED = 0, 1, 2, 130
DOMAIN = 'example.org'
IFNAMSIZ = 15  # longest Linux interface name
ETHTOOL_OFF = ['rx', 'tx', 'sg', 'tso', 'gso', 'gro', 'lro', 'rxvlan', 'txvlan']


class SetupError(Exception):
    """The fabric could not be built (exit 2)."""


class Interrupted(Exception):
    """SIGINT or SIGTERM (exit 130)."""


class Signals:
    """SIGINT and SIGTERM become Interrupted, except inside critical(): there
    they wait for its end, so that a process is never started without being
    recorded (and so stopped), nor a mininet node left half made."""

    def __init__(self):
        self.depth, self.pending = 0, None

    def install(self):
        signal.signal(signal.SIGTERM, self.handler)
        signal.signal(signal.SIGINT, self.handler)

    @staticmethod
    def ignore():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    def handler(self, signum, _frame):
        if self.depth:
            self.pending = signum
            return
        raise Interrupted(signal.Signals(signum).name)

    @contextlib.contextmanager
    def critical(self):
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if not self.depth and self.pending is not None:
                signum, self.pending = self.pending, None
                raise Interrupted(signal.Signals(signum).name)


SIGNALS = Signals()


def log(msg, *args):
    print(msg % args if args else msg, flush=True)


# ---------------------------------------------------------------------------
# Service keys (wire.KeyOf): segment i is the first 4 bytes of SHA-256 of
# component i, 0 becoming 1; the instance segment is 0.

def segment(component):
    v = int.from_bytes(hashlib.sha256(component.encode()).digest()[:4], 'big')
    return v or 1


def key_of(name):
    """The wire key string and prefix length of a service name: /echo ->
    ('xxxxxxxx:00000000:00000000:00000000', 32)."""
    comps = [c for c in name.split('/') if c]
    segs = [segment(c) for c in comps] + [0] * (4 - len(comps))
    return ':'.join('%08x' % s for s in segs), 32 * len(comps)


def node_key(node):
    return key_of('/_node/' + node)


# ---------------------------------------------------------------------------
# Processes: every one the run starts is owned here and stopped by its PID.

class Procs:
    def __init__(self, logdir):
        self.logdir = logdir
        self.procs = []  # (name, Popen, log path), in start order

    def start(self, name, argv, node=None, stdout=None):
        """Start argv in the host's namespace, or in a mininet node's with
        node.popen (mnexec -da PID: the PID is the command's own). Its
        output goes to logs/<name>.log; stdout may go elsewhere (a path)."""
        path = os.path.join(self.logdir, name + '.log')
        errf = open(path, 'ab')
        outf = open(stdout, 'ab') if stdout else errf
        try:
            with SIGNALS.critical():
                if node is None:
                    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=outf, stderr=errf,
                                         start_new_session=True)
                else:
                    # Not start_new_session: mnexec -d makes its own session,
                    # and would fork (changing the PID) if it led a group.
                    p = node.popen(argv, stdin=subprocess.DEVNULL, stdout=outf, stderr=errf)
                self.procs.append((name, p, path))
        finally:
            errf.close()
            if stdout:
                outf.close()
        return p

    def run(self, name, argv, node=None, timeout=60, record=True):
        """Run argv to completion; returns (exit code, stdout, stderr). The
        command and its output go to logs/<name>.log (unless record is false
        and it succeeded)."""
        path = os.path.join(self.logdir, name + '.log')
        with SIGNALS.critical():
            if node is None:
                p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True)
            else:
                p = node.popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            self.procs.append((name, p, path))
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(p)
            out, err = p.communicate()
            err = (err or b'') + (b'\n(killed after %ds)' % timeout)
        finally:
            self.procs = [x for x in self.procs if x[1] is not p]
        out, err = out.decode(errors='replace'), err.decode(errors='replace')
        if not record and p.returncode == 0:
            return p.returncode, out, err
        with open(path, 'a') as f:
            f.write('$ %s\n%s%s\n(exit %s)\n' % (' '.join(argv), out, err, p.returncode))
        return p.returncode, out, err

    @staticmethod
    def stop(p, timeout=5.0):
        if p.poll() is not None:
            return
        try:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        except ProcessLookupError:
            pass

    def stop_one(self, p):
        self.stop(p)
        self.procs = [x for x in self.procs if x[1] is not p]

    def dead(self):
        """The started processes that have exited, with their status."""
        return [(name, p.returncode, path) for name, p, path in self.procs if p.poll() is not None]

    def stop_all(self):
        for _, p, _ in reversed(self.procs):
            self.stop(p)
        self.procs = []


def tail(path, lines=15):
    try:
        with open(path, errors='replace') as f:
            return ''.join(f.readlines()[-lines:])
    except OSError:
        return ''


def free_port(taken):
    """A free TCP port on 127.0.0.1 (released again: the process that binds
    it comes right after)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(('127.0.0.1', 0))
            port = s.getsockname()[1]
        if port not in taken:
            taken.add(port)
            return port


def wait_listening(port, what, proc, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SetupError('%s exited with status %s before listening on 127.0.0.1:%d' % (what, proc.returncode, port))
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SetupError('%s is not listening on 127.0.0.1:%d after %.0fs' % (what, port, timeout))


def write_json_yaml(path, doc):
    """YAML is a superset of JSON: the configuration files are written as
    JSON, so no YAML library is needed."""
    with open(path, 'w') as f:
        json.dump(doc, f, indent=2)
        f.write('\n')


# ---------------------------------------------------------------------------
# Mininet switch classes: no OpenFlow, no OVS; the switch is a process of ours.

class DmscSwitch(Switch):
    """A mininet switch whose datapath is a DMSC target process. The run
    passes itself (dmsc) and the P4Runtime port; start() launches the target
    on the switch's interfaces with their topology port numbers."""

    def __init__(self, name, run=None, p4rt_port=None, **params):
        self.run, self.p4rt_port, self.proc = run, p4rt_port, None
        Switch.__init__(self, name, **params)

    def data_ports(self):
        """(port number, interface name) of every link interface."""
        return sorted((port, intf.name) for intf, port in self.ports.items() if intf.name != 'lo')

    def wait_ready(self, timeout):
        wait_listening(self.p4rt_port, '%s of %s' % (type(self).__name__, self.name), self.proc, timeout)

    def stop(self, deleteIntfs=True):
        if self.proc is not None:
            self.run.procs.stop_one(self.proc)
            self.proc = None
        Switch.stop(self, deleteIntfs)


class DmscSoftSwitch(DmscSwitch):
    """dmsc softswitch over AF_PACKET, in the host's namespace."""

    def __init__(self, name, **params):
        params['inNamespace'] = False  # Mininet.addSwitch passes its default
        DmscSwitch.__init__(self, name, **params)

    def start(self, controllers):
        argv = [self.run.dmsc, '--log-level', self.run.log_level, 'softswitch',
                '--p4rt', '127.0.0.1:%d' % self.p4rt_port, '--device-id', '1']
        for port, intf in self.data_ports():
            argv += ['--port', '%d=iface:%s' % (port, intf)]
        for port, impair in sorted(self.run.impairments.get(self.name, {}).items()):
            argv += ['--impair', '%d:%s' % (port, impair)]
        self.proc = self.run.procs.start('switch-' + self.name, argv)


class DmscBMv2Switch(DmscSwitch):
    """simple_switch_grpc in a network namespace of its own, P4Runtime relayed
    from 127.0.0.1:<p4rt_port> on the host to its namespace's 127.0.0.1:9559."""

    GRPC_PORT = 9559

    def __init__(self, name, **params):
        self.relay = None
        params['inNamespace'] = True
        DmscSwitch.__init__(self, name, **params)

    def start(self, controllers):
        b = self.run.bmv2
        self.cmd('ip link set lo up')
        argv = [b['simple_switch_grpc'], '--device-id', '1', '--no-p4',
                '--log-file', os.path.join(self.run.logdir, 'bmv2-%s' % self.name), '--log-level', 'warn',
                # Its nanomsg notification socket is a path: one per switch.
                '--notifications-addr', 'ipc://%s/bmv2-%s-notifications.ipc' % (self.run.workdir, self.name)]
        for port, intf in self.data_ports():
            argv += ['-i', '%d@%s' % (port, intf)]
        argv += ['--', '--grpc-server-addr', '127.0.0.1:%d' % self.GRPC_PORT, '--cpu-port', '255']
        self.proc = self.run.procs.start('switch-' + self.name, argv, node=self)
        # The relay: a socat on the host per connection, whose child enters
        # this switch's namespaces (mnexec -a PID) to reach its loopback.
        # (A script, because socat's EXEC address cannot hold the colons of
        # the inner address.)
        inner = os.path.join(self.run.workdir, 'relay-%s.sh' % self.name)
        with open(inner, 'w') as f:
            f.write('#!/bin/sh\nexec %s -a %d %s STDIO TCP:127.0.0.1:%d\n' % (
                shutil.which('mnexec'), self.pid, b['socat'], self.GRPC_PORT))
        os.chmod(inner, 0o755)
        self.relay = self.run.procs.start('relay-' + self.name, [
            b['socat'], 'TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork' % self.p4rt_port, 'EXEC:' + inner])

    def wait_ready(self, timeout):
        # The relay listens at once; BMv2's own server, in the namespace, is
        # what has to be up.
        deadline = time.monotonic() + timeout
        while not self.cmd('ss -Hltn sport = :%d' % self.GRPC_PORT).strip():
            if self.proc.poll() is not None:
                raise SetupError('simple_switch_grpc of %s exited with status %s: %s' % (
                    self.name, self.proc.returncode, tail(os.path.join(self.run.logdir, 'switch-%s.log' % self.name))))
            if time.monotonic() > deadline:
                raise SetupError('simple_switch_grpc of %s does not listen on 127.0.0.1:%d after %.0fs' % (self.name, self.GRPC_PORT, timeout))
            time.sleep(0.1)
        DmscSwitch.wait_ready(self, timeout)

    def stop(self, deleteIntfs=True):
        if self.relay is not None:
            # socat's per-connection children are in its process group (it
            # leads a session of its own): stop them with it.
            try:
                os.killpg(self.relay.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            self.run.procs.stop_one(self.relay)
            self.relay = None
        DmscSwitch.stop(self, deleteIntfs)


# ---------------------------------------------------------------------------
# The run: topology, processes, and the readings the checks need.

class Run:
    def __init__(self, cfg):
        self.dmsc = cfg['dmsc']
        self.workdir = cfg['workdir']
        self.target = cfg['target']
        self.log_level = cfg.get('log_level') or 'info'
        self.bmv2 = cfg.get('bmv2')
        self.prefix = cfg.get('intf_prefix') or ''
        self.topo = cfg['topology']
        self.nodes = {n['name']: n for n in self.topo['nodes']}
        self.logdir = os.path.join(self.workdir, 'logs')
        self.cadir = os.path.join(self.workdir, 'ca')
        os.makedirs(self.logdir, exist_ok=True)
        self.procs = Procs(self.logdir)
        self.taken = set()
        self.net = None
        self.p4rt = {}   # node -> host port of its P4Runtime
        self.gnmi = {}   # node -> gNMI port
        self.agents = {}  # node -> Popen
        self.spa_port = None
        self.scsc_status = None
        self.hosts = {}  # (node, port) -> mininet host
        self.impairments = {}  # node -> {port: impairment}
        self.probes = not cfg.get('scenario')
        self.pods_issued = set()

    # --- names -------------------------------------------------------------

    def sw_intf(self, node, port):
        return '%s%s-eth%d' % (self.prefix, node, port)

    @staticmethod
    def host_name(node, port):
        return 'h-%s-%d' % (node, port)

    def host_intf(self, node, port):
        return self.host_name(node, port) + '-eth0'

    def root_intfs(self):
        """The interfaces this run makes in the host's namespace."""
        if self.target != 'softswitch':
            return []
        names = []
        for l in self.topo['links']:
            names += [self.sw_intf(l['A']['node'], l['A']['port']), self.sw_intf(l['B']['node'], l['B']['port'])]
        for n in self.topo['nodes']:
            names += [self.sw_intf(n['name'], p) for p in n['pod_ports']]
        return names

    def check_names(self):
        names = self.root_intfs() + [self.host_intf(n['name'], p) for n in self.topo['nodes'] for p in n['pod_ports']]
        long = [n for n in names if len(n) > IFNAMSIZ]
        if long:
            raise SetupError('interface names longer than %d characters: %s (shorter node names, or a shorter --intf-prefix)'
                             % (IFNAMSIZ, ', '.join(long)))
        out = subprocess.run(['ip', '-o', 'link', 'show'], capture_output=True, text=True, check=True).stdout
        existing = {line.split(':')[1].strip().split('@')[0] for line in out.splitlines() if ':' in line}
        clash = sorted(set(self.root_intfs()) & existing)
        if clash:
            raise SetupError('interfaces %s already exist in this namespace: another run, or one that was killed '
                             '(remove yours with ip link del NAME), or pass --intf-prefix' % ', '.join(clash))

    # --- the domain ----------------------------------------------------------

    def dmsc_run(self, name, *args, timeout=30):
        code, out, err = self.procs.run(name, [self.dmsc, '--log-level', 'warn'] + list(args), timeout=timeout)
        if code != 0:
            raise SetupError('dmsc %s failed (exit %s): %s' % (' '.join(args), code, (err or out).strip()))
        return out

    def make_ca(self):
        # --force: a --workdir used before gets a new CA, not an error.
        self.dmsc_run('ca', 'ca', 'init', '--force', '--domain', DOMAIN, '--dir', self.cadir)
        ids = [('spa1', 'spa'), ('scsc1', 'scsc')] + [(n['name'], n['role']) for n in self.topo['nodes']]
        for node, role in ids:
            self.dmsc_run('ca', 'ca', 'issue', 'node', '--force', '--dir', self.cadir, '--id', node, '--role', role)

    def pod_cert(self, prefix):
        comps = '.'.join(c for c in prefix.split('/') if c)
        crt, key = os.path.join(self.cadir, 'pod.%s.crt' % comps), os.path.join(self.cadir, 'pod.%s.key' % comps)
        if prefix not in self.pods_issued:
            self.dmsc_run('ca', 'ca', 'issue', 'pod', '--force', '--dir', self.cadir, '--prefix', prefix)
            self.pods_issued.add(prefix)
        return crt, key

    def identity(self, node):
        return {'ca': os.path.join(self.cadir, 'ca.crt'),
                'cert': os.path.join(self.cadir, 'node.%s.crt' % node),
                'key': os.path.join(self.cadir, 'node.%s.key' % node)}

    def start_spa(self):
        d = os.path.join(self.workdir, 'spa')
        os.makedirs(d, exist_ok=True)
        write_json_yaml(os.path.join(d, 'policy.yaml'), {'version': 1, 'rules': [{'allow': 'self'}]})
        self.spa_port = free_port(self.taken)
        store = os.path.join(d, 'spa.db')
        if os.path.exists(store):  # a previous run's in this --workdir, for the CA replaced above
            os.remove(store)
        write_json_yaml(os.path.join(d, 'spa.yaml'), {
            'listen': '127.0.0.1:%d' % self.spa_port, 'tls': self.identity('spa1'),
            'store': store, 'policy': os.path.join(d, 'policy.yaml'),
            'audit_log': os.path.join(self.logdir, 'spa-audit.jsonl')})
        p = self.procs.start('spa', [self.dmsc, '--log-level', self.log_level, 'spa', '--config', os.path.join(d, 'spa.yaml')])
        wait_listening(self.spa_port, 'SPA', p)

    # --- the network -----------------------------------------------------------

    def fabric_ports(self, node):
        """port -> link of the node's fabric ports."""
        out = {}
        for l in self.topo['links']:
            for end in ('A', 'B'):
                if l[end]['node'] == node:
                    out[l[end]['port']] = l
        return out

    def build(self):
        cls = {'softswitch': DmscSoftSwitch, 'bmv2': DmscBMv2Switch}[self.target]
        for l in self.topo['links']:
            parts = []
            if l.get('delay_ns'):
                parts.append('delay=%dns' % l['delay_ns'])
            if l.get('capacity_bps'):
                parts.append('rate=%dbit' % l['capacity_bps'])
            if parts and self.target == 'softswitch':
                for end in ('A', 'B'):
                    self.impairments.setdefault(l[end]['node'], {})[l[end]['port']] = ','.join(parts)
        # fixLimits raises machine-wide limits and sysctls; this run changes
        # only what it creates, so mininet's init is done here without it.
        if os.geteuid() != 0:
            raise SetupError('not root')
        Mininet.inited = True
        with SIGNALS.critical():
            self.net = Mininet(topo=None, build=False, controller=None, autoSetMacs=False, autoStaticArp=False,
                               waitConnected=False, link=Link, host=Host)
            self.populate(cls)
        for n in self.topo['nodes']:
            self.net.get(n['name']).wait_ready(timeout=20)

    def populate(self, cls):
        """Switches of class cls, hosts, links; then the network's build and
        start (which starts the switch processes)."""
        net = self.net
        for i, n in enumerate(self.topo['nodes']):
            self.p4rt[n['name']] = free_port(self.taken)
            net.addSwitch(n['name'], cls=cls, dpid='%x' % (i + 1), run=self, p4rt_port=self.p4rt[n['name']])
        for l in self.topo['links']:
            a, b = l['A'], l['B']
            net.addLink(a['node'], b['node'], port1=a['port'], port2=b['port'],
                        intfName1=self.sw_intf(a['node'], a['port']), intfName2=self.sw_intf(b['node'], b['port']))
        for n in self.topo['nodes']:
            for p in n['pod_ports']:
                h = net.addHost(self.host_name(n['name'], p), ip=None)
                self.hosts[(n['name'], p)] = h
                net.addLink(n['name'], h, port1=p, port2=0,
                            intfName1=self.sw_intf(n['name'], p), intfName2=self.host_intf(n['name'], p))
        net.build()
        self.quiet_interfaces()
        net.start()

    def quiet_interfaces(self):
        """Offloads off (a user-space switch sees every frame as it is on the
        wire: no partial checksums, no super-frames) and IPv6 off (no ND, MLD or
        router solicitations on the links) on every interface the run made."""
        for node in self.net.switches + self.net.hosts:
            for intf in node.intfList():
                if intf.name == 'lo':
                    continue
                node.cmd('sysctl -q -w net.ipv6.conf.%s.disable_ipv6=1' % intf.name)
                out = node.cmd('ethtool -K %s %s 2>&1' % (intf.name, ' '.join('%s off' % f for f in ETHTOOL_OFF)))
                with open(os.path.join(self.logdir, 'ethtool.log'), 'a') as f:
                    f.write('%s %s: %s\n' % (node.name, intf.name, '; '.join(out.split('\n')).strip('; ') or 'ok'))
                shown = node.cmd('ethtool -k %s' % intf.name)
                for feature in ('tx-checksumming', 'rx-checksumming', 'generic-segmentation-offload',
                                'tcp-segmentation-offload', 'generic-receive-offload'):
                    for line in shown.splitlines():
                        if line.startswith(feature + ':') and ': on' in line and '[fixed]' not in line:
                            raise SetupError('%s: %s is still on after ethtool -K' % (intf.name, feature))

    # --- agents and SCSC -----------------------------------------------------

    def start_agents(self):
        d = os.path.join(self.workdir, 'nodes')
        os.makedirs(d, exist_ok=True)
        for n in self.topo['nodes']:
            name = n['name']
            ports = []
            for port, l in sorted(self.fabric_ports(name).items()):
                p = {'num': port, 'kind': 'fabric', 'metric': l.get('metric') or 10}
                if l.get('capacity_bps'):
                    p['capacity'] = '%dbit' % l['capacity_bps']
                ports.append(p)
            ports += [{'num': p, 'kind': 'pod'} for p in n['pod_ports']]
            ident = self.identity(name)
            ident['trusted_nodes'] = self.cadir
            self.gnmi[name] = free_port(self.taken)
            conf = {
                'node': name, 'role': n['role'],
                'switch': {'p4rt': '127.0.0.1:%d' % self.p4rt[name], 'device_id': 1, 'election_id': 1},
                'ports': ports, 'identity': ident,
                # A little slower than the defaults (25ms, 100ms): mininet's
                # processes share the machine with whatever else runs.
                'timers': {'hello': '50ms', 'dead': '400ms'},
                'gnmi': {'listen': '127.0.0.1:%d' % self.gnmi[name], 'tls': True},
            }
            if self.target == 'bmv2':
                conf['switch']['pipeline'] = {'device_config': self.bmv2['device_config']}
            if n['role'] == 'sg' and n['pod_ports']:
                conf['sg'] = {'spa': '127.0.0.1:%d' % self.spa_port}
            if not self.probes:
                # The scenario reads the routes' direct counters: only the
                # pods' frames should count there.
                conf['probe'] = {'interval': 'off'}
            path = os.path.join(d, name + '.yaml')
            write_json_yaml(path, conf)
            self.agents[name] = self.procs.start('agent-' + name, [self.dmsc, '--log-level', self.log_level, 'agent', '--config', path])
        for name, p in self.agents.items():
            wait_listening(self.gnmi[name], 'the agent of %s (gNMI)' % name, p, timeout=30)

    def start_scsc(self):
        d = os.path.join(self.workdir, 'scsc')
        os.makedirs(d, exist_ok=True)
        status = free_port(self.taken)
        write_json_yaml(os.path.join(d, 'scsc.yaml'), {
            'id': 'scsc1',
            'agents': [{'name': n, 'addr': '127.0.0.1:%d' % self.gnmi[n]} for n in sorted(self.gnmi)],
            'tls': self.identity('scsc1'),
            'status_addr': '127.0.0.1:%d' % status,
        })
        p = self.procs.start('scsc', [self.dmsc, '--log-level', self.log_level, 'scsc', '--config', os.path.join(d, 'scsc.yaml')])
        wait_listening(status, 'SCSC (status)', p)
        self.scsc_status = 'http://127.0.0.1:%d/status' % status

    def scsc(self):
        with urllib.request.urlopen(self.scsc_status, timeout=3) as r:
            return json.load(r)

    # --- readings --------------------------------------------------------------

    def fib(self, node):
        """The node's switch as P4Runtime reads it back (dmsc topo fib)."""
        code, out, err = self.procs.run('fib-reads', [self.dmsc, 'topo', 'fib', '--json', '--timeout', '3s',
                                                      '--p4rt', '127.0.0.1:%d' % self.p4rt[node]], timeout=10, record=False)
        if code != 0:
            raise RuntimeError('dmsc topo fib of %s: %s' % (node, err.strip()))
        return json.loads(out)

    @staticmethod
    def route(fib, key, length):
        for r in fib['routes']:
            if r['key'] == key and r['len'] == length:
                return r
        return None

    def show_tls(self):
        i = self.identity('scsc1')
        return ['--ca', i['ca'], '--cert', i['cert'], '--key', i['key']]

    def check_alive(self):
        dead = self.procs.dead()
        if dead:
            raise RuntimeError('; '.join('%s exited with status %s:\n%s' % (n, c, tail(p)) for n, c, p in dead))

    def wait_converged(self, timeout):
        """Every switch routes every node's key (its own to its CPU)."""
        want = {n: node_key(n) for n in self.nodes}
        deadline = time.monotonic() + timeout
        missing = {}
        while time.monotonic() < deadline:
            self.check_alive()
            missing = {}
            for n in self.nodes:
                try:
                    f = self.fib(n)
                except RuntimeError as e:
                    missing[n] = [str(e)]
                    continue
                lack = [m for m, (k, l) in want.items() if self.route(f, k, l) is None]
                if lack:
                    missing[n] = lack
            if not missing:
                return
            time.sleep(0.2)
        raise RuntimeError('not converged after %.0fs; missing node routes: %s' % (timeout, missing))

    # --- link cuts ---------------------------------------------------------------

    def set_link(self, a, b, up):
        """Cut or restore every link between switches a and b. The software
        switch sees the interfaces go down (mininet's configLinkStatus, as a
        cable pulled). BMv2 cannot take that: once one of its interfaces goes
        down its libpcap ports stop receiving on every port. So on BMv2 the
        interfaces stay up and each end's egress is redirected by tc to a
        veth whose peer is down, which drops it: nothing crosses the link."""
        if self.target != 'bmv2':
            self.net.configLinkStatus(a, b, 'up' if up else 'down')
            return
        links = self.net.linksBetween(self.net.get(a), self.net.get(b))
        if not links:
            raise RuntimeError('no link between %s and %s' % (a, b))
        for link in links:
            for intf in (link.intf1, link.intf2):
                node = intf.node
                if up:
                    out = node.cmd('tc qdisc del dev %s clsact 2>&1' % intf.name)
                else:
                    if 'dcut0' not in node.intfNames() and not node.cmd('ip -o link show dcut0 2>/dev/null').strip():
                        node.cmd('ip link add dcut0 type veth peer name dcut1 && sysctl -q -w net.ipv6.conf.dcut0.disable_ipv6=1 '
                                 '&& sysctl -q -w net.ipv6.conf.dcut1.disable_ipv6=1 && ip link set dcut0 up')
                    out = node.cmd('tc qdisc add dev %s clsact 2>&1 && tc filter add dev %s egress protocol all u32 '
                                   'match u32 0 0 action mirred egress redirect dev dcut0 2>&1' % (intf.name, intf.name))
                if out.strip():
                    raise RuntimeError('%s link %s on %s: %s' % ('restoring' if up else 'cutting', intf.name, node.name, out.strip()))

    # --- cleanup ---------------------------------------------------------------

    def cleanup(self):
        self.procs.stop_all()
        if self.net is not None:
            try:
                self.net.stop()
            except Exception as e:  # keep going: report, never leave the rest
                log('cleanup: net.stop(): %s', e)
            self.net = None
        left = []
        if self.target == 'softswitch':
            out = subprocess.run(['ip', '-o', 'link', 'show'], capture_output=True, text=True).stdout
            existing = {line.split(':')[1].strip().split('@')[0] for line in out.splitlines() if ':' in line}
            left = sorted(set(self.root_intfs()) & existing)
            for name in left:  # ours by name: made by this run
                subprocess.run(['ip', 'link', 'del', name], capture_output=True)
        return left


# ---------------------------------------------------------------------------
# The Figure 2 scenario.

class Checks:
    def __init__(self):
        self.results = []  # (name, ok, detail, seconds)

    def check(self, name, fn):
        t0 = time.monotonic()
        try:
            detail = fn() or ''
            ok = True
        except Interrupted:
            raise
        except Exception as e:  # a check fails with its reason, the run goes on
            detail, ok = str(e), False
        dt = time.monotonic() - t0
        self.results.append((name, ok, detail, dt))
        log('%s  %-42s %6.2fs  %s', 'PASS' if ok else 'FAIL', name, dt, detail)
        return ok

    def failed(self):
        return [r for r in self.results if not r[1]]


def poll(what, fn, timeout, interval=0.1):
    """fn() until it returns a true value; its last complaint (an
    exception's message) explains a timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = fn()
            if v:
                return v
        except Interrupted:
            raise
        except Exception as e:
            last = e
        if time.monotonic() >= deadline:
            raise RuntimeError('%s: not within %.1fs%s' % (what, timeout, (': %s' % last) if last else ''))
        time.sleep(interval)


def fig2(run, checks):
    nodes, links = run.nodes, run.topo['links']
    for n in ('sg1', 'sg4', 'sr1', 'sr2', 'sr3'):
        if n not in nodes:
            raise SetupError('scenario fig2 needs node %s (examples/fig2.yaml)' % n)

    def port_towards(a, b):
        for l in links:
            if l['A']['node'] == a and l['B']['node'] == b:
                return l['A']['port']
            if l['B']['node'] == a and l['A']['node'] == b:
                return l['B']['port']
        raise SetupError('scenario fig2 needs a link %s-%s' % (a, b))

    sg1_up, sr1_sr3, sr1_sr2 = port_towards('sg1', 'sr1'), port_towards('sr1', 'sr3'), port_towards('sr1', 'sr2')
    sr2_sr3, sr3_sg4 = port_towards('sr2', 'sr3'), port_towards('sr3', 'sg4')
    if not nodes['sg1']['pod_ports'] or not nodes['sg4']['pod_ports']:
        raise SetupError('scenario fig2 needs pod ports on sg1 and sg4')
    client_at = ('sg1', nodes['sg1']['pod_ports'][0])
    echo_at = ('sg4', nodes['sg4']['pod_ports'][0])
    client_host, echo_host = run.hosts[client_at], run.hosts[echo_at]
    echo_key, echo_len = key_of('/echo')
    ca = os.path.join(run.cadir, 'ca.crt')
    echo_crt, echo_keyfile = run.pod_cert('/echo')
    cli_crt, cli_keyfile = run.pod_cert('/client')
    state = {}

    def hops(node, key=echo_key, length=echo_len):
        r = run.route(run.fib(node), key, length)
        return (r['kind'], [h['port'] for h in r['hops']]) if r else None

    def counted(node, key=echo_key, length=echo_len):
        r = run.route(run.fib(node), key, length)
        return r['packets'] if r else 0

    # 1. Convergence, read back over P4Runtime.
    def converged():
        run.wait_converged(60)
        f = run.fib('sg1')
        r = run.route(f, *node_key('sg4'))
        if r is None or r['kind'] != 'forward' or [h['port'] for h in r['hops']] != [sg1_up]:
            raise RuntimeError('sg1 routes /_node/sg4 as %s, want forward via port %d' % (r, sg1_up))
        own = run.route(f, *node_key('sg1'))
        if own is None or own['kind'] != 'to_cpu':
            raise RuntimeError('sg1 routes its own key as %s, want to_cpu' % own)
        return '%d switches route all %d node keys (sg1: /_node/sg4 via port %d, own key to_cpu)' % (
            len(nodes), len(nodes), sg1_up)
    if not checks.check('fabric converged (FIBs over P4Runtime)', converged):
        return

    if run.scsc_status:
        def scsc_sees():
            want_edges = 2 * len(links)

            def ok():
                st = run.scsc()
                conn = [a['name'] for a in st['agents'] if a['connected']]
                if len(conn) != len(nodes):
                    raise RuntimeError('connected to %s of %d agents' % (conn, len(nodes)))
                t = st['topology']
                if t['nodes'] != len(nodes) or t['edges'] != want_edges:
                    raise RuntimeError('topology %s, want %d nodes and %d edges' % (t, len(nodes), want_edges))
                return st
            st = poll('SCSC sees the fabric', ok, 20, 0.2)
            return 'connected to all %d agents over gNMI; topology %d nodes, %d edges (from %s)' % (
                len(nodes), st['topology']['nodes'], st['topology']['edges'], st['topology'].get('source'))
        checks.check('SCSC subscribed to every agent', scsc_sees)

    # 2. The echo pod announces /echo at sg4.
    def echo_up():
        out = os.path.join(run.logdir, 'pod-echo.out')
        state['echo'] = run.procs.start('pod-echo', [
            run.dmsc, '--log-level', run.log_level, 'pod', 'serve', '--link', 'iface:' + run.host_intf(*echo_at),
            '--ca', ca, '--cert', echo_crt, '--key', echo_keyfile, '--service', 'echo'], node=echo_host, stdout=out)

        def registered():
            if state['echo'].poll() is not None:
                raise RuntimeError('pod serve exited with %s: %s' % (state['echo'].returncode, tail(os.path.join(run.logdir, 'pod-echo.log'))))
            for line in tail(out, 50).splitlines():
                if line.startswith('registered /echo instance '):
                    return line.split()[-1]
            return None
        inst = poll('the echo pod registers', registered, 20)
        state['instance'] = inst
        state['instance_id'] = int(inst.split(':')[-1], 16)
        return '/echo instance %s at %s port %d (%s)' % (inst, echo_at[0], echo_at[1], echo_host.name)
    if not checks.check('echo pod registered at sg4', echo_up):
        return

    # 3. Routes to /echo everywhere on the path.
    def routes():
        want = {'sg1': ('forward', [sg1_up]), 'sr1': ('forward', [sr1_sr3]), 'sr3': ('forward', [sr3_sg4])}
        for node, w in want.items():
            def routed(node=node, w=w):
                got = hops(node)
                if got != w:
                    raise RuntimeError('%s routes /echo as %s, want %s' % (node, got, w))
                return True
            poll('%s routes /echo' % node, routed, 15)
        r = run.route(run.fib('sg4'), echo_key, echo_len)
        if r is None or r['kind'] != 'local' or [(h['port'], h['instance']) for h in r['hops']] != [(echo_at[1], state['instance_id'])]:
            raise RuntimeError('sg4 has /echo as %s, want local delivery to port %d instance %d' % (r, echo_at[1], state['instance_id']))
        return 'sg1 → port %d, sr1 → port %d (sr3), sr3 → port %d (sg4), sg4 delivers to port %d instance %d' % (
            sg1_up, sr1_sr3, sr3_sg4, echo_at[1], state['instance_id'])
    if not checks.check('routes to /echo (FIBs over P4Runtime)', routes):
        return

    def call(message, timeout=30):
        code, out, err = run.procs.run('pod-call', [
            run.dmsc, '--log-level', 'warn', 'pod', 'call', '--link', 'iface:' + run.host_intf(*client_at),
            '--ca', ca, '--cert', cli_crt, '--key', cli_keyfile, '--timeout', '20s',
            '/echo', 'Echo', json.dumps({'message': message})], node=client_host, timeout=timeout)
        return code, out, err

    def calls(n, tag):
        for i in range(n):
            msg = '%s %d' % (tag, i + 1)
            code, out, err = call(msg)
            if code != 0:
                raise RuntimeError('call %r failed (exit %s): %s' % (msg, code, err.strip()[-400:]))
            try:
                reply = json.loads(out)
            except ValueError:
                raise RuntimeError('call %r: not JSON: %r' % (msg, out[:200]))
            served = reply.get('servedBy', reply.get('served_by'))
            if reply.get('message') != msg or served != state['instance']:
                raise RuntimeError('call %r: reply %s, want message %r served by %s' % (msg, reply, msg, state['instance']))
            caller = reply.get('caller', '')
            if not caller.endswith('/client'):
                raise RuntimeError('call %r: the server saw caller %r, want the /client pod' % (msg, caller))
        return n

    def counters():
        return {n: counted(n) for n in ('sg1', 'sr1', 'sr2', 'sr3', 'sg4')}

    def delta(before, after):
        return {n: after[n] - before[n] for n in before}

    # 4. Calls by name, through sg1 → sr1 → sr3 → sg4.
    def calls_before():
        c0 = counters()
        n = calls(3, 'before the cut')
        d = delta(c0, counters())
        for node in ('sg1', 'sr1', 'sr3', 'sg4'):
            if d[node] <= 0:
                raise RuntimeError('%s\'s /echo route counted no frames during the calls: %s' % (node, d))
        if d['sr2'] != 0:
            raise RuntimeError('sr2 forwarded %d frames to /echo, off the SPF path: %s' % (d['sr2'], d))
        return '%d calls answered by %s; frames to /echo per route: %s' % (n, state['instance'], d)
    if not checks.check('calls by name before the cut', calls_before):
        return

    # 5. Cut sr1–sr3: sr1 reroutes through sr2.
    def cut():
        run.set_link('sr1', 'sr3', up=False)
        t0 = time.monotonic()
        poll('sr1 reroutes /echo', lambda: hops('sr1') == ('forward', [sr1_sr2]), 10, 0.05)
        dt = time.monotonic() - t0
        h2 = hops('sr2')
        if h2 != ('forward', [sr2_sr3]):
            raise RuntimeError('sr2 routes /echo as %s, want forward via port %d (sr3)' % (h2, sr2_sr3))
        return 'sr1 → port %d (sr2) %.0fms after the cut; sr2 → port %d (sr3)' % (sr1_sr2, dt * 1000, sr2_sr3)
    if not checks.check('sr1–sr3 cut: reroute (FIB over P4Runtime)', cut):
        return

    def calls_after():
        c0 = counters()
        n = calls(3, 'after the cut')
        d = delta(c0, counters())
        for node in ('sg1', 'sr1', 'sr2', 'sr3', 'sg4'):
            if d[node] <= 0:
                raise RuntimeError('%s\'s /echo route counted no frames during the calls: %s' % (node, d))
        return '%d calls answered; frames to /echo per route: %s' % (n, d)
    checks.check('calls by name after the cut (via sr2)', calls_after)

    # 6. Restore the link: back to the direct path.
    def restore():
        run.set_link('sr1', 'sr3', up=True)
        t0 = time.monotonic()
        poll('sr1 routes /echo directly again', lambda: hops('sr1') == ('forward', [sr1_sr3]), 15, 0.05)
        dt = time.monotonic() - t0
        c0 = counters()
        calls(1, 'after the repair')
        d = delta(c0, counters())
        if d['sr2'] != 0 or d['sr1'] <= 0 or d['sr3'] <= 0:
            raise RuntimeError('frames to /echo per route after the repair: %s (want none through sr2)' % d)
        return 'sr1 → port %d again %.0fms after the repair; a call went sr1 → sr3: %s' % (sr1_sr3, dt * 1000, d)
    checks.check('sr1–sr3 restored: back on the direct path', restore)

    # 7. The echo pod withdraws: the route goes, and a call finds no route.
    def withdraw():
        run.procs.stop_one(state['echo'])
        out = tail(os.path.join(run.logdir, 'pod-echo.out'), 50)
        if 'withdrawn /echo instance %s' % state['instance'] not in out:
            raise RuntimeError('the echo pod did not report its withdrawal: %r' % out)
        poll('sg1 forgets /echo', lambda: hops('sg1') is None, 10, 0.05)
        code, out, err = call('after the withdrawal')
        if code == 0:
            raise RuntimeError('a call to a withdrawn service succeeded: %s' % out)
        return 'withdrawn; sg1 has no /echo route; a call fails: %s' % err.strip().splitlines()[-1][:160]
    checks.check('echo withdrawn: route gone, call refused', withdraw)

    def alive():
        run.check_alive()
        return 'the switches, agents, SPA and SCSC ran throughout'
    checks.check('no process died', alive)


SCENARIOS = {'fig2': fig2}


def print_addresses(run):
    log('\nThe fabric (%s target), its files in %s:', run.target, run.workdir)
    for n in sorted(run.nodes):
        log('  %-6s P4Runtime 127.0.0.1:%-5d gNMI 127.0.0.1:%-5d log %s', n, run.p4rt[n], run.gnmi[n],
            os.path.join(run.logdir, 'agent-%s.log' % n))
    log('  SPA 127.0.0.1:%d%s', run.spa_port, ('; SCSC status ' + run.scsc_status) if run.scsc_status else '')
    first = sorted(run.nodes)[0]
    log('Try:\n  %s topo fib --p4rt 127.0.0.1:%d', run.dmsc, run.p4rt[first])
    log('  %s show fib --agent 127.0.0.1:%d %s', run.dmsc, run.gnmi[first], ' '.join(run.show_tls()))
    if not run.hosts:
        return
    # A server at the last pod host, a caller at the first (on another SG
    # when there is one); mnexec -a PID runs a command in a host's namespace.
    hosts = sorted(run.hosts)
    client = hosts[0]
    server = next((h for h in reversed(hosts) if h[0] != client[0]), hosts[-1])
    ca = os.path.join(run.cadir, 'ca.crt')
    echo_crt, echo_key = run.pod_cert('/echo')
    cli_crt, cli_key = run.pod_cert('/client')
    log('  mnexec -a %d %s pod serve --link iface:%s --ca %s --cert %s --key %s &',
        run.hosts[server].pid, run.dmsc, run.host_intf(*server), ca, echo_crt, echo_key)
    log('  mnexec -a %d %s pod call --link iface:%s --ca %s --cert %s --key %s /echo Echo \'{"message":"hi"}\'',
        run.hosts[client].pid, run.dmsc, run.host_intf(*client), ca, cli_crt, cli_key)
    log('  (pod hosts: %s)', ', '.join('%s pid %d' % (run.hosts[h].name, run.hosts[h].pid) for h in hosts))


def load_config(path):
    with open(path) as f:
        cfg = json.load(f)
    for field in ('dmsc', 'workdir', 'target', 'topology'):
        if field not in cfg:
            raise SetupError('%s: field %s is missing' % (path, field))
    if cfg['target'] not in ('softswitch', 'bmv2'):
        raise SetupError('%s: target %r: want softswitch or bmv2' % (path, cfg['target']))
    if cfg['target'] == 'bmv2' and not cfg.get('bmv2'):
        raise SetupError('%s: target bmv2 without a bmv2 section' % path)
    if cfg.get('scenario') and cfg['scenario'] not in SCENARIOS:
        raise SetupError('%s: scenario %r: want one of %s' % (path, cfg['scenario'], ', '.join(SCENARIOS)))
    return cfg


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--config', required=True, help='run.json, as dmsc topo mininet writes it')
    args = ap.parse_args()

    SIGNALS.install()
    setLogLevel('warning')

    run, cfg, checks, code, waiting = None, {}, Checks(), EXIT_PASS, False
    t_start = time.monotonic()
    try:
        cfg = load_config(args.config)
        run = Run(cfg)
        log('== %s on mininet, target %s: %d nodes, %d links, %d pod hosts', cfg['topology'].get('name') or 'topology',
            run.target, len(run.nodes), len(run.topo['links']), sum(len(n['pod_ports']) for n in run.topo['nodes']))
        run.check_names()
        run.make_ca()
        run.start_spa()
        t0 = time.monotonic()
        run.build()
        log('   mininet network up in %.1fs: switches %s', time.monotonic() - t0, ', '.join(sorted(run.nodes)))
        run.start_agents()
        if cfg.get('scsc'):
            run.start_scsc()
        log('   SPA, %d agents%s started', len(run.agents), ' and SCSC' if run.scsc_status else '')
        if cfg.get('scenario'):
            log('== scenario %s', cfg['scenario'])
            SCENARIOS[cfg['scenario']](run, checks)
        else:
            t0 = time.monotonic()
            run.wait_converged(60)
            log('   converged in %.1fs: every switch routes every node key', time.monotonic() - t0)
        if cfg.get('keep') or not cfg.get('scenario'):
            print_addresses(run)
            log('\nUp until SIGINT or SIGTERM (Ctrl-C).')
            waiting = True
            while True:
                time.sleep(1)
                run.check_alive()
    except Interrupted as e:
        log('\n%s: cleaning up', e)
        # A signal is how a fabric kept up ends (the checks, if any, decide);
        # during the build or the scenario it is an interruption.
        code = EXIT_PASS if waiting else EXIT_INTERRUPTED
    except SetupError as e:
        log('SETUP FAILED: %s', e)
        code = EXIT_SETUP
    except Exception as e:  # a crash of ours is a failed run, with its traceback
        import traceback
        traceback.print_exc()
        log('FAILED: %s', e)
        code = EXIT_SETUP if not checks.results else EXIT_FAIL
    finally:
        SIGNALS.ignore()
        if run is not None:
            if checks.failed() or code == EXIT_SETUP:
                for name, _, path in run.procs.procs:
                    if name.startswith(('agent-', 'switch-', 'spa', 'scsc', 'pod-')):
                        t = tail(path, 8)
                        if t:
                            log('--- last lines of %s:\n%s', path, t.rstrip())
            left = run.cleanup()
            if left:
                log('cleanup: removed interfaces net.stop() left: %s', ', '.join(left))
    if checks.results:
        failed = checks.failed()
        verdict = {EXIT_PASS: 'PASS', EXIT_INTERRUPTED: 'INTERRUPTED'}.get(code, 'FAIL') if not failed else 'FAIL'
        log('== %s: %s — %d of %d checks passed in %.1fs', cfg.get('scenario') or 'run', verdict,
            len(checks.results) - len(failed), len(checks.results), time.monotonic() - t_start)
        if failed and code == EXIT_PASS:
            code = EXIT_FAIL
    return code


if __name__ == '__main__':
    sys.exit(main())
