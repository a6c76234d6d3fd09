package grpcbench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// ErrNoNginx: nginx is not installed, or lacks HTTP/2 or gRPC proxying.
// The nginx paths are skipped with this error's message.
var ErrNoNginx = errors.New("grpcbench: no usable nginx")

// NginxBinary finds nginx (NGINX, then PATH, then /usr/sbin/nginx) and
// checks that `nginx -V` lists HTTP/2 and does not exclude the gRPC proxy.
func NginxBinary() (string, error) {
	bin := os.Getenv("NGINX")
	if bin == "" {
		if p, err := exec.LookPath("nginx"); err == nil {
			bin = p
		} else {
			bin = "/usr/sbin/nginx"
		}
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("%w: %s not found (apt-get install nginx, or set NGINX)", ErrNoNginx, bin)
	}
	out, err := exec.Command(bin, "-V").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%w: %s -V: %v: %s", ErrNoNginx, bin, err, bytes.TrimSpace(out))
	}
	v := string(out)
	if !strings.Contains(v, "--with-http_v2_module") {
		return "", fmt.Errorf("%w: %s was built without --with-http_v2_module", ErrNoNginx, bin)
	}
	if strings.Contains(v, "--without-http_grpc_module") {
		return "", fmt.Errorf("%w: %s was built --without-http_grpc_module", ErrNoNginx, bin)
	}
	return bin, nil
}

// Nginx is one nginx process (master and one worker) this package started
// with its own configuration, not the system service.
type Nginx struct {
	// Addr is where it listens; Upstream where it passes calls.
	Addr, Upstream string
	Dir            string
	cmd            *exec.Cmd
	exited         chan struct{}
	waitErr        error
}

// hop is one proxy's configuration.
type hop struct {
	Dir, Listen, Upstream string
	// ListenTLS: accept TLS from the previous proxy and require its client
	// certificate; UpstreamTLS: pass over TLS with a client certificate.
	ListenTLS, UpstreamTLS bool
	Cert, Key              string
}

// The configuration keeps the client's and the upstream HTTP/2 connections
// open for the whole run: nginx 1.22 closes a client connection after
// keepalive_requests calls (1,000 by default) and opens an upstream
// connection per call without a keepalive pool, either of which would
// measure reconnections instead of proxying.
var confTmpl = template.Must(template.New("nginx.conf").Parse(`# written by bench/grpc
worker_processes 1;
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path {{.Dir}}/body;
  proxy_temp_path {{.Dir}}/proxy;
  fastcgi_temp_path {{.Dir}}/fastcgi;
  uwsgi_temp_path {{.Dir}}/uwsgi;
  scgi_temp_path {{.Dir}}/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 1h;
  http2_max_concurrent_streams 1024;
  upstream next {
    server {{.Upstream}};
    keepalive 256;
    keepalive_requests 100000000;
    keepalive_timeout 1h;
  }
  server {
    listen {{.Listen}}{{if .ListenTLS}} ssl{{end}} http2;
{{- if .ListenTLS}}
    ssl_protocols TLSv1.3;
    ssl_certificate {{.Cert}};
    ssl_certificate_key {{.Key}};
    ssl_verify_client on;
    ssl_client_certificate {{.Cert}};
{{- end}}
    location / {
{{- if .UpstreamTLS}}
      grpc_pass grpcs://next;
      grpc_ssl_protocols TLSv1.3;
      grpc_ssl_certificate {{.Cert}};
      grpc_ssl_certificate_key {{.Key}};
      grpc_ssl_verify on;
      grpc_ssl_trusted_certificate {{.Cert}};
      grpc_ssl_name ` + certName + `;
      grpc_ssl_session_reuse on;
{{- else}}
      grpc_pass grpc://next;
{{- end}}
      grpc_read_timeout 1h;
      grpc_send_timeout 1h;
    }
  }
}
`))

// freePort returns a loopback port nothing listens on now. nginx binds it a
// moment later; StartNginx retries when another process took it meanwhile.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	return addr, l.Close()
}

// startNginx runs nginx in the foreground (daemon off) as this process's
// child, in its own process group so that Stop reaches its worker too.
func startNginx(ctx context.Context, bin string, h hop) (*Nginx, error) {
	if err := os.MkdirAll(h.Dir, 0o755); err != nil {
		return nil, err
	}
	var conf bytes.Buffer
	if err := confTmpl.Execute(&conf, h); err != nil {
		return nil, err
	}
	confFile := filepath.Join(h.Dir, "nginx.conf")
	if err := os.WriteFile(confFile, conf.Bytes(), 0o644); err != nil {
		return nil, err
	}
	errLog := filepath.Join(h.Dir, "error.log")
	cmd := exec.Command(bin, "-c", confFile, "-p", h.Dir, "-e", errLog, "-g", "daemon off;")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("grpcbench: start %s: %w", bin, err)
	}
	n := &Nginx{Addr: h.Listen, Upstream: h.Upstream, Dir: h.Dir, cmd: cmd, exited: make(chan struct{})}
	go func() {
		n.waitErr = cmd.Wait()
		close(n.exited)
	}()
	// Ready when it accepts connections; an exit first is a failure
	// (a bad configuration, the port taken).
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", h.Listen, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return n, nil
		}
		select {
		case <-n.exited:
			log, _ := os.ReadFile(errLog)
			return nil, fmt.Errorf("grpcbench: nginx for %s exited (%v): %s%s", h.Listen, n.waitErr,
				bytes.TrimSpace(out.Bytes()), bytes.TrimSpace(log))
		case <-ctx.Done():
			n.Stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			n.Stop()
			return nil, fmt.Errorf("grpcbench: nginx did not listen on %s within 5 s", h.Listen)
		}
	}
}

// Stop ends the nginx this package started, by its process group (the
// master's PID, which stays ours until Wait reaps it): SIGTERM (nginx's fast
// shutdown), then SIGKILL after 3 s.
func (n *Nginx) Stop() error {
	pgid := n.cmd.Process.Pid
	select {
	case <-n.exited:
		return nil
	default:
	}
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-n.exited:
		// The master waits for its workers before it exits. Nothing is
		// signalled after it was reaped: its PID may be another's now.
		return nil
	case <-time.After(3 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-n.exited
		return fmt.Errorf("grpcbench: nginx %d did not stop on SIGTERM; killed", pgid)
	}
}

// Memory is the resident memory of the master and its workers from
// /proc: RSS counts every page mapped, PSS divides pages shared with other
// processes (the nginx binary and libraries, shared by both proxies) among
// them, so it is what one more proxy adds.
func (n *Nginx) Memory() (rss, pss int64, err error) {
	pids := []int{n.cmd.Process.Pid}
	kids, err := children(n.cmd.Process.Pid)
	if err != nil {
		return 0, 0, err
	}
	for _, pid := range append(pids, kids...) {
		m, err := procMemory(pid)
		if err != nil {
			return 0, 0, err
		}
		rss += m["Rss"]
		pss += m["Pss"]
	}
	return rss, pss, nil
}

// children lists pid's child processes (its nginx workers).
func children(pid int) ([]int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil, err
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if k, err := strconv.Atoi(f); err == nil {
			out = append(out, k)
		}
	}
	return out, nil
}

// procMemory reads /proc/<pid>/smaps_rollup.
func procMemory(pid int) (map[string]int64, error) {
	file := fmt.Sprintf("/proc/%d/smaps_rollup", pid)
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	m, err := parseSmapsRollup(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return m, nil
}

// parseSmapsRollup reads the "Name:   123 kB" lines of a smaps_rollup
// file: field name → bytes. It needs an Rss line.
func parseSmapsRollup(b []byte) (map[string]int64, error) {
	out := map[string]int64{}
	for line := range strings.Lines(string(b)) {
		name, rest, ok := strings.Cut(line, ":")
		f := strings.Fields(rest)
		if !ok || len(f) != 2 || f[1] != "kB" {
			continue // the header line, or a field not in kB
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 || kb > 1<<40 {
			return nil, fmt.Errorf("%s: %q is not a size in kB", name, strings.TrimSpace(rest))
		}
		out[name] = kb << 10
	}
	if _, ok := out["Rss"]; !ok {
		return nil, errors.New("no Rss line")
	}
	return out, nil
}

// StartNginx starts the nginx path: the client calls the first nginx, which
// passes to the second, which passes to the Echo server; with mtls the hop
// between the two proxies is mutual TLS 1.3. dir holds the configurations
// and logs. An error wrapping ErrNoNginx means nginx is not there.
func StartNginx(ctx context.Context, dir string, mtls bool) (*Path, error) {
	bin, err := NginxBinary()
	if err != nil {
		return nil, err
	}
	name := Nginx2
	if mtls {
		name = Nginx2MTLS
	}
	p := &Path{Name: name}
	server, stop, err := tcpEcho(nil)
	if err != nil {
		return nil, err
	}
	p.onClose(stop)
	fail := func(err error) (*Path, error) {
		p.Close()
		return nil, err
	}
	var certFile, keyFile string
	if mtls {
		c, err := newCert()
		if err != nil {
			return fail(err)
		}
		if certFile, keyFile, err = c.writeFiles(dir); err != nil {
			return fail(err)
		}
	}
	// Server side first, so that each proxy's upstream is up when the
	// first call comes.
	upstream := server
	var proxies []*Nginx
	for i, side := range []string{"server-side", "client-side"} {
		h := hop{Dir: filepath.Join(dir, side), Upstream: upstream, Cert: certFile, Key: keyFile,
			ListenTLS: mtls && i == 0, UpstreamTLS: mtls && i == 1}
		var n *Nginx
		for attempt := 0; ; attempt++ {
			if h.Listen, err = freePort(); err != nil {
				return fail(err)
			}
			n, err = startNginx(ctx, bin, h)
			if err == nil || attempt == 2 || !strings.Contains(err.Error(), "Address already in use") {
				break
			}
		}
		if err != nil {
			return fail(err)
		}
		p.onClose(n.Stop)
		proxies = append([]*Nginx{n}, proxies...)
		upstream = n.Addr
	}
	p.Proxies = proxies
	if err := connect(ctx, p, proxies[0].Addr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		return fail(err)
	}
	return p, nil
}
