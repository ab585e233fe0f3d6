package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/moby/moby/api/types/container"
)

// Docker's health check defaults.
const (
	defaultHealthInterval      = 30 * time.Second
	defaultHealthTimeout       = 30 * time.Second
	defaultHealthStartInterval = 5 * time.Second
	defaultHealthRetries       = 3
	maxHealthLog               = 5
	maxHealthOutput            = 4096
)

// healthCommand is the probe's command, nil when the container has none.
func healthCommand(hc *container.HealthConfig) []string {
	if hc == nil || len(hc.Test) == 0 {
		return nil
	}
	switch hc.Test[0] {
	case "CMD":
		if len(hc.Test) > 1 {
			return hc.Test[1:]
		}
	case "CMD-SHELL":
		if len(hc.Test) > 1 {
			return []string{"/bin/sh", "-c", hc.Test[1]}
		}
	}
	return nil
}

// startHealth starts the health checks of a container that just started.
// The caller holds c.mu.
func (cs *containers) startHealth(c *ctr) {
	cs.stopHealth(c)
	hc := c.rec.Config.Healthcheck
	cmd := healthCommand(hc)
	if cmd == nil {
		c.rec.State.Health = nil
		return
	}
	c.rec.State.Health = &container.Health{Status: container.Starting, Log: []*container.HealthcheckResult{}}
	stop := make(chan struct{})
	c.healthStop = stop
	interval, timeout, startInterval := hc.Interval, hc.Timeout, hc.StartInterval
	if interval <= 0 {
		interval = defaultHealthInterval
	}
	if timeout <= 0 {
		timeout = defaultHealthTimeout
	}
	if startInterval <= 0 {
		startInterval = defaultHealthStartInterval
	}
	retries := hc.Retries
	if retries <= 0 {
		retries = defaultHealthRetries
	}
	startedAt := c.rec.State.StartedAt
	go func() {
		for {
			wait := interval
			inStart := hc.StartPeriod > 0 && time.Since(startedAt) < hc.StartPeriod
			if inStart {
				wait = startInterval
			}
			t := time.NewTimer(wait)
			select {
			case <-stop:
				t.Stop()
				return
			case <-t.C:
			}
			cs.probe(c, stop, cmd, timeout, retries, hc.StartPeriod, startedAt)
		}
	}()
}

// probe runs one health check and records its result.
func (cs *containers) probe(c *ctr, stop chan struct{}, cmd []string, timeout time.Duration, retries int, startPeriod time.Duration, startedAt time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	res := &container.HealthcheckResult{Start: time.Now()}
	code, out, err := cs.runExec(ctx, c, cmd, maxHealthOutput)
	res.End = time.Now()
	switch {
	case ctx.Err() != nil:
		res.ExitCode, res.Output = -1, fmt.Sprintf("Health check exceeded timeout (%v)", timeout)
	case err != nil:
		res.ExitCode, res.Output = -1, err.Error()
	default:
		res.ExitCode, res.Output = code, out
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-stop:
		return // the container stopped meanwhile
	default:
	}
	h := c.rec.State.Health
	if h == nil {
		return
	}
	old := h.Status
	h.Log = append(h.Log, res)
	if len(h.Log) > maxHealthLog {
		h.Log = h.Log[len(h.Log)-maxHealthLog:]
	}
	if res.ExitCode == 0 {
		h.FailingStreak = 0
		h.Status = container.Healthy
	} else if !(h.Status == container.Starting && startPeriod > 0 && res.Start.Sub(startedAt) < startPeriod) {
		// Failures in the start period do not count while still starting.
		h.FailingStreak++
		if h.FailingStreak >= retries {
			h.Status = container.Unhealthy
		}
	}
	if err := c.save(); err != nil {
		cs.log.Warn("save health status", "id", c.rec.ID, "err", err)
	}
	if h.Status != old {
		cs.e.emit("container", "health_status: "+string(h.Status), c.rec.ID, c.attributesLocked())
	}
}

// stopHealth ends the container's health checks. The caller holds c.mu.
func (cs *containers) stopHealth(c *ctr) {
	if c.healthStop != nil {
		close(c.healthStop)
		c.healthStop = nil
	}
}
