//go:build tools

// Package kube pins kube-apiserver as a build dependency of this module.
package kube

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
