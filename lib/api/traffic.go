package api

import "time"

// TrafficCapture is a capture's progress, or the last one's outcome: GET,
// POST and DELETE /api/v1/traffic/capture answer with it. pkg/traffic
// reports its captures in this type (traffic.Status).
type TrafficCapture struct {
	State    string    `json:"state"` // running, done, cancelled, failed
	Cluster  string    `json:"cluster"`
	File     string    `json:"file"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end,omitempty"`
	Until    time.Time `json:"until"`
	MaxBytes int64     `json:"max_bytes"`
	// Captured records were written; Dropped were lost because the writer
	// was behind (the capture's overhead bound at work).
	Captured uint64 `json:"captured"`
	Dropped  uint64 `json:"dropped"`
	Bytes    int64  `json:"bytes"`
	// Reason says why it ended (duration, size limit, cancelled, error).
	Reason string `json:"reason,omitempty"`
}

// TrafficCaptureRequest is the body of POST /api/v1/traffic/capture.
type TrafficCaptureRequest struct {
	Cluster string `json:"cluster"`
	// Duration is a Go duration ("60s", "5m").
	Duration string `json:"duration"`
	// MaxBytes ends the capture when its file reaches this size (0: none).
	MaxBytes int64 `json:"max_bytes"`
}
