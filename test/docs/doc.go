// Package docs holds tests that keep the documentation true: what it
// promises about the config file, the make targets and where it links.
package docs
