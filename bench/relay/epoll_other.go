//go:build !linux

package main

import "errors"

func startEpoll(listen, backend string, loops int) (relay, error) {
	return nil, errors.New("-mode epoll needs Linux")
}
