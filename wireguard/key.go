package wireguard

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Key is a Curve25519 key.
type Key = wgtypes.Key

// ParseKey parses a base64 key as published in a node record.
func ParseKey(s string) (Key, error) { return wgtypes.ParseKey(s) }

// LoadKey reads the private key at path, creating one (0600) when the file
// does not exist; created reports whether it did. A key file readable by
// others is refused: the private key must not leak.
func LoadKey(path string) (k Key, created bool, err error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		if k, err = RotateKey(path); err != nil {
			return Key{}, false, err
		}
		return k, true, nil
	}
	if err != nil {
		return Key{}, false, fmt.Errorf("wireguard key %s: %w", path, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return Key{}, false, fmt.Errorf("wireguard key %s: mode %04o, want 0600 (the private key is readable by others; chmod 600 it or remove it for a new key)", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Key{}, false, fmt.Errorf("wireguard key %s: %w", path, err)
	}
	k, err = wgtypes.ParseKey(strings.TrimSpace(string(b)))
	if err != nil {
		// The parse error does not echo the key.
		return Key{}, false, fmt.Errorf("wireguard key %s: not a base64 WireGuard key (remove it for a new one): %w", path, err)
	}
	return k, false, nil
}

// RotateKey writes a new private key at path and returns it. The key is
// written in full to a private temporary file and renamed into place, so a
// crash leaves the old key or the new one, never half of one.
func RotateKey(path string) (Key, error) {
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return Key{}, fmt.Errorf("wireguard key: generate: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".wireguard-key-*") // mode 0600
	if err != nil {
		return Key{}, fmt.Errorf("wireguard key %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() { _ = os.Remove(tmp) }() // after the rename, or on failure
	_, err = f.WriteString(k.String() + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return Key{}, fmt.Errorf("wireguard key %s: %w", path, err)
	}
	return k, nil
}
