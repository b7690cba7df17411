// Package config holds Switchyard's configuration: the TOML schema, its defaults and
// its validation. It is deliberately free of I/O beyond reading the file and of any
// dependency on the running proxy, so that proxyctl and tests can import it.
//
// Every load decodes into a fresh NewDefault value and never on top of a running
// configuration: the TOML decoder keeps old values for absent keys and reuses existing
// slice elements, so decoding over a live Config would let a removed [[cluster]] or a
// deleted key survive a reload. A Config that Parse or Load returns has passed Check
// and is meant to be treated as immutable; a reload builds a new one.
//
// Parse rejects keys the schema does not know (a typo would otherwise silently fall
// back to a default) and reports every problem at once, each with the TOML line where
// it could be found, so an operator can fix a file in one edit.
package config
