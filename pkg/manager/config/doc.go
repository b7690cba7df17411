// Package config keeps the running configuration and reloads it. Reloads
// come from the config file (its directory is watched with fsnotify and its
// content hashed every 2 s, so editors that rename files and Kubernetes
// ConfigMap symlink swaps are both seen), from SIGHUP, and from the API.
//
// Every reload parses the whole file into fresh defaults and validates it.
// A config that fails changes nothing: the old one keeps running, and the
// error, with its line, is kept for the status API. A valid one is handed to
// the apply function (the server: cluster diff, routes, listeners), which
// does no blocking I/O; then subscribers are woken through one-slot channels,
// so a slow subscriber never delays a reload.
package config
