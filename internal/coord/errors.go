package coord

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
	"github.com/gatehouse-dev/gatehouse/internal/identify"
)

// Errors the coordinator returns. statusOf maps them to HTTP statuses.
var (
	// ErrUnauthorized: no credentials, or credentials that match no role.
	ErrUnauthorized = errors.New("coord: unauthorized")
	// ErrForbidden: valid credentials whose role may not do this.
	ErrForbidden = errors.New("coord: forbidden")
	// ErrNotFound: no such shard, node, session or route.
	ErrNotFound = errors.New("coord: not found")
	// ErrBadRequest: a request that does not parse or is out of range.
	ErrBadRequest = errors.New("coord: bad request")
	// ErrTooManyRequests: the client IP made too many failed attempts or
	// connection attempts; retry after the time the error carries.
	ErrTooManyRequests = errors.New("coord: too many requests")
	// ErrNoShardFree: every shard is held.
	ErrNoShardFree = errors.New("coord: no shard is free")
	// ErrClosed: the coordinator is shutting down.
	ErrClosed = errors.New("coord: shutting down")
	// ErrUnavailable: no replica leads right now (an election is under
	// way), or this one cannot reach the control plane; retry shortly.
	ErrUnavailable = errors.New("coord: unavailable")
	// ErrNotImplemented: the request is valid, but this version cannot
	// carry it out.
	ErrNotImplemented = errors.New("coord: not implemented")
	// ErrConflict: the request conflicts with what runs (a reshard under
	// way, or one that cannot start: its plan says why).
	ErrConflict = errors.New("coord: conflict")
)

// retryError carries when a refused request may be retried.
type retryError struct {
	err   error
	after time.Duration
}

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

// statusError is an error that a compatible endpoint answers with a
// status its original defines (Shardman answers "no shard free" with 401).
type statusError struct {
	err    error
	status int
}

func (e *statusError) Error() string { return e.err.Error() }
func (e *statusError) Unwrap() error { return e.err }

// statusOf is the one place errors become HTTP statuses.
func statusOf(err error) int {
	var se *statusError
	switch {
	case errors.As(err, &se):
		return se.status
	case errors.Is(err, ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, ErrTooManyRequests), errors.Is(err, identify.ErrBudgetExhausted):
		return http.StatusTooManyRequests
	case errors.Is(err, ErrNoShardFree):
		return http.StatusConflict
	case errors.Is(err, ErrClosed), errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrNotImplemented):
		return http.StatusNotImplemented
	case errors.Is(err, ErrConflict):
		return http.StatusConflict
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusInternalServerError
}

// codeOf names err for the code field of error bodies.
func codeOf(err error) string {
	switch {
	case errors.Is(err, identify.ErrBudgetExhausted):
		return coordapi.CodeBudgetExhausted
	case errors.Is(err, ErrNoShardFree):
		return coordapi.CodeNoShardFree
	case errors.Is(err, ErrClosed):
		return coordapi.CodeShuttingDown
	}
	switch statusOf(err) {
	case http.StatusUnauthorized:
		return coordapi.CodeUnauthorized
	case http.StatusForbidden:
		return coordapi.CodeForbidden
	case http.StatusNotFound:
		return coordapi.CodeNotFound
	case http.StatusBadRequest:
		return coordapi.CodeBadRequest
	case http.StatusTooManyRequests:
		return coordapi.CodeTooManyRequests
	case http.StatusConflict:
		return coordapi.CodeConflict
	case http.StatusServiceUnavailable:
		return coordapi.CodeUnavailable
	case http.StatusRequestEntityTooLarge:
		return coordapi.CodeTooLarge
	case http.StatusNotImplemented:
		return coordapi.CodeNotImplemented
	}
	return coordapi.CodeInternal
}

// writeError answers err as JSON with statusOf's status and, when the
// error says when to retry, a Retry-After header.
func writeError(w http.ResponseWriter, err error) {
	status := statusOf(err)
	body := coordapi.ErrorBody{Error: err.Error(), Code: codeOf(err)}
	if after := setRetryAfter(w, err); after > 0 {
		body.RetryAfterMS = after.Milliseconds()
	}
	if status == http.StatusInternalServerError {
		body.Error = "internal error" // details go to the log, not to clients
	}
	writeJSON(w, status, body)
}

// setRetryAfter sets the Retry-After header (whole seconds, rounded up)
// when err says when to retry, and returns that delay.
func setRetryAfter(w http.ResponseWriter, err error) time.Duration {
	var re *retryError
	if !errors.As(err, &re) || re.after <= 0 {
		return 0
	}
	w.Header().Set("Retry-After", strconv.FormatInt(int64((re.after+time.Second-1)/time.Second), 10))
	return re.after
}

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, fmt.Sprintf(`{"error":%q}`, "internal error"), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
