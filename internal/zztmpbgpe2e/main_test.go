//go:build e2e

package zztmpbgpe2e

import "github.com/skeinnet/skein/lab"

var shared *lab.Lab
const labName = "zzunused"
