// Package server builds the proxy's components from a configuration, starts
// them in dependency order and stops them in reverse.
package server
