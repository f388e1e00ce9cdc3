package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/skeinnet/skein/api"
)

// GetKubePod returns the pod skein-kube mirrored at namespace/name; ok is
// false when it mirrored none (no skein-kube, or not yet).
func (c *Client) GetKubePod(ctx context.Context, namespace, name string) (p api.KubePod, ok bool, err error) {
	if err := segment("namespace", namespace); err != nil {
		return p, false, fmt.Errorf("get mirrored pod: %w", err)
	}
	if err := segment("pod name", name); err != nil {
		return p, false, fmt.Errorf("get mirrored pod: %w", err)
	}
	err = c.get(ctx, c.prefix+api.KubePodsKey+namespace+"/"+name, &p)
	switch {
	case errors.Is(err, ErrNotFound):
		return p, false, nil
	case err != nil:
		return p, false, err
	}
	return p, true, nil
}
