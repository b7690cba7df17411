package server

import (
	"fmt"
	"os"

	"github.com/switchyard-db/switchyard/lib/config"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"gopkg.in/natefinch/lumberjack.v2"
)

// NewLogger builds the process logger from the [log] section.
func NewLogger(c config.Log) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(c.Level)
	if err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if c.Format == "json" {
		enc = zapcore.NewJSONEncoder(encCfg)
	} else {
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	}
	var out zapcore.WriteSyncer = zapcore.Lock(os.Stderr)
	if c.File != "" {
		out = zapcore.AddSync(&lumberjack.Logger{Filename: c.File, MaxSize: 300, MaxBackups: 10})
	}
	return zap.New(zapcore.NewCore(enc, out, level), zap.ErrorOutput(zapcore.Lock(os.Stderr))), nil
}
