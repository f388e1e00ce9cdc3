package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"

	"golang.org/x/sync/errgroup"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/dockerdrv"
)

// dockerBackend gives the Docker driver the CNI API's own calls, so a
// Docker attachment is allocated, published, enforced and released exactly
// as a skein-cni one.
type dockerBackend struct{ s *cniServer }

func (b dockerBackend) Allocate(ctx context.Context, req api.AllocateRequest) (api.AllocateResponse, error) {
	resp, cerr := b.s.allocateAttachment(ctx, req)
	if cerr != nil {
		return resp, cerr
	}
	return resp, nil
}

func (b dockerBackend) Commit(ctx context.Context, req api.CommitRequest) (api.Endpoint, error) {
	ep, cerr := b.s.commitAttachment(ctx, req)
	if cerr != nil {
		return ep, cerr
	}
	return ep, nil
}

func (b dockerBackend) Release(ctx context.Context, network string, o api.Owner) ([]netip.Addr, error) {
	freed, cerr := b.s.releaseAttachment(ctx, network, o)
	if cerr != nil {
		return freed, cerr
	}
	return freed, nil
}

func (b dockerBackend) Collect(ctx context.Context, network string, valid []api.Owner) ([]api.Owner, error) {
	freed, cerr := b.s.collectAttachments(ctx, network, valid)
	if cerr != nil {
		return freed, cerr
	}
	return freed, nil
}

// dockerPlugin is the Docker driver with its socket, ready to run.
type dockerPlugin struct {
	drv *dockerdrv.Driver
	dp  *dockerdrv.NetlinkDataplane
	ln  net.Listener
}

// newDockerPlugin opens the plugin socket when Config.DockerPluginSocket
// is set; nil otherwise.
func (a *Agent) newDockerPlugin(cni *cniServer) (*dockerPlugin, error) {
	if a.cfg.DockerPluginSocket == "" {
		return nil, nil
	}
	log := a.log.With("component", "docker")
	var engine *dockerdrv.Engine
	if a.cfg.DockerHost != "" {
		var err error
		if engine, err = dockerdrv.NewEngine(a.cfg.DockerHost); err != nil {
			return nil, fmt.Errorf("--docker-host: %w", err)
		}
	}
	dp, err := dockerdrv.NewNetlinkDataplane()
	if err != nil {
		return nil, fmt.Errorf("docker driver: %w", err)
	}
	drv, err := dockerdrv.New(dockerdrv.Config{
		Backend:   dockerBackend{s: cni},
		Dataplane: dp,
		StatePath: filepath.Join(a.cfg.StateDir, "docker.json"),
		Engine:    engine,
		IPv6:      api.DualStack(a.cluster.Pools),
		Log:       log,
	})
	if err != nil {
		dp.Close()
		return nil, err
	}
	ln, err := listenSocket(a.cfg.DockerPluginSocket, log)
	if err != nil {
		dp.Close()
		return nil, fmt.Errorf("--docker-plugin-socket: %w", err)
	}
	log.Info("docker plugin listening", "socket", a.cfg.DockerPluginSocket, "engine", a.cfg.DockerHost)
	return &dockerPlugin{drv: drv, dp: dp, ln: ln}, nil
}

// run serves the plugin socket and runs the driver's reconciliation until
// ctx ends.
func (p *dockerPlugin) run(ctx context.Context, log *slog.Logger) error {
	defer p.dp.Close()
	p.drv.CollectUnknown(ctx)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serve(gctx, p.ln, p.drv.Handler(), nil) })
	g.Go(func() error { return p.drv.Run(gctx) })
	err := g.Wait()
	log.Debug("docker plugin stopped", "err", err)
	return err
}
