//go:build tools

// Package tools pins the command this wrapper module builds (kwok).
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
