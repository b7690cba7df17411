//go:build !linux

package main

import "errors"

func startEpoll(listen, backend string, o epollOptions) (relay, error) {
	return nil, errors.New("-mode epoll and -mode coro need Linux")
}
