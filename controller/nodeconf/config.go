package nodeconf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"

	"github.com/dmsc-mesh/dmsc/ca"
	"github.com/dmsc-mesh/dmsc/controller"
	"github.com/dmsc-mesh/dmsc/spa"
)

// Config builds the agent's configuration. With switch.p4rt: embedded,
// Switch is left empty: the caller starts the software switch (Embedded)
// and sets Switch to its P4Runtime address. For an SG with an sg section it
// creates the SPA client (spa.Dial: it does not wait for SPA, whose calls
// retry); the returned Closer closes it and must be called once the agent
// has stopped. The Closer is never nil.
func (f *File) Config(log *slog.Logger) (controller.Config, io.Closer, error) {
	if f.nodeKey == nil {
		return controller.Config{}, nopCloser{}, errors.New("nodeconf: the File was not loaded (use Load or Parse)")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := controller.Config{
		NodeID:      f.Node,
		Role:        f.Role,
		DeviceID:    f.Switch.DeviceID,
		ElectionID:  f.Switch.ElectionID,
		Pipeline:    f.pipeline,
		Ports:       slices.Clone(f.Ports),
		Key:         f.nodeKey,
		TrustedKeys: f.TrustedKeys(),
		Timers:      f.Timers,
		Logger:      log,
		Probe:       f.Probe,
	}
	cfg.Probe.Targets = slices.Clone(f.Probe.Targets)
	if !f.Switch.IsEmbedded() {
		cfg.Switch = f.Switch.P4RT
	}
	id := f.Identity
	if f.GNMI != nil {
		g := &controller.GNMIConfig{Listen: f.GNMI.Listen, Domain: f.domain, Interval: f.GNMI.Interval}
		if f.GNMI.TLS {
			tc, _, err := ca.LoadServerTLS(id.CA, id.Cert, id.Key)
			if err != nil {
				return controller.Config{}, nopCloser{}, fmt.Errorf("nodeconf: gnmi TLS: %w", err)
			}
			g.TLS = tc
		}
		cfg.GNMI = g
	}
	var closer io.Closer = nopCloser{}
	if f.SG != nil {
		tc, _, err := ca.LoadClientTLS(id.CA, id.Cert, id.Key, ca.RoleSPA)
		if err != nil {
			return controller.Config{}, nopCloser{}, fmt.Errorf("nodeconf: TLS to SPA: %w", err)
		}
		c, err := spa.Dial(context.Background(), f.SG.SPAAddr, tc, spa.WithClientLogger(log.With("component", "spa-client")))
		if err != nil {
			return controller.Config{}, nopCloser{}, fmt.Errorf("nodeconf: sg.spa: %w", err)
		}
		sg := f.SG.Settings
		sg.SPA = c
		cfg.SG = &sg
		closer = c
	}
	return cfg, closer, nil
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }
