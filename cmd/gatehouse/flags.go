package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
)

// newLogger returns the text logger of command cmd at -log-level level.
func newLogger(cmd, level string, stderr io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError{fmt.Sprintf("%s: -log-level: %v", cmd, err)}
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: l})), nil
}

// botToken returns the bot token from -token or $GATEHOUSE_TOKEN, without
// "Bot "; "" when neither is set.
func botToken(flag string) string {
	if flag == "" {
		flag = os.Getenv("GATEHOUSE_TOKEN")
	}
	return strings.TrimPrefix(flag, "Bot ")
}

// parseIntentsFlag parses -intents: a number, or names separated by
// commas; "" is 0 (the default intents).
func parseIntentsFlag(cmd, s string) (discord.Intents, error) {
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		if in := discord.Intents(n); in.Valid() {
			return in, nil
		}
		return 0, usageError{fmt.Sprintf("%s: -intents: %d has unknown bits", cmd, n)}
	}
	in, err := parseIntents(s)
	if err != nil {
		return 0, usageError{cmd + ": -intents: " + err.Error()}
	}
	return in, nil
}
