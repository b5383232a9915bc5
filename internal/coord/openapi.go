package coord

import (
	_ "embed"
	"net/http"
)

// openAPIDoc describes every route of the coordinator; a test keeps it and
// the route table in step.
//
//go:embed openapi.json
var openAPIDoc []byte

func (c *Coordinator) openAPI(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openAPIDoc)
	return nil
}
