// Architecture rules for the whole module, checked by every `go test ./...`.
//
// The layers table below is the single source of truth for which package may
// import which; docs/architecture.md draws the same picture. A new package
// fails TestDependencyDirection until it is added to the table, so every
// package has to declare its place.
package gatehouse_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// Third-party modules, named once so the table stays readable.
const (
	modWebsocket  = "github.com/coder/websocket"
	modCompress   = "github.com/klauspost/compress"
	modNATSServer = "github.com/nats-io/nats-server/v2"
	modNATSClient = "github.com/nats-io/nats.go"
	modPrometheus = "github.com/prometheus/client_golang"
	modNKeys      = "github.com/nats-io/nkeys"
)

// A layer says what one package of the module may import.
type layer struct {
	// imports lists the module packages, relative to the module root, that
	// the package may import directly.
	imports []string
	// modules lists the third-party modules whose packages the package may
	// import directly.
	modules []string
	// stdlibOnly forbids any dependency outside the Go standard packages, direct
	// or indirect.
	stdlibOnly bool
	// anything lifts the import rules (but not the rule against linking test
	// support): commands wire everything together.
	anything bool
}

// layers maps every package of the module, by path relative to the module
// root, to what it may import. Arrows point down only. The table is exact:
// TestLayersExact fails for an entry whose package does not exist and for
// an allowance the package does not use.
var layers = map[string]layer{
	"cmd/gatehouse": {anything: true},

	// Discord protocol, compression and the simulator.
	"internal/discord":             {stdlibOnly: true},
	"internal/discord/codec":       {modules: []string{modCompress}},
	"internal/discord/sim":         {imports: []string{"internal/discord", "internal/discord/codec"}},
	"internal/discord/sim/simtest": {imports: []string{"internal/discord/sim"}},
	"internal/chaos":               {imports: []string{"internal/discord", "internal/discord/sim", "internal/loadtest"}, modules: []string{modNATSClient}},
	"internal/loadtest":            {imports: []string{"internal/discord", "internal/discord/codec", "internal/broker", "internal/gateway"}, modules: []string{modWebsocket, modNATSClient}},

	"internal/shard":             {stdlibOnly: true},
	"internal/lease":             {},
	"internal/lease/kvlease":     {imports: []string{"internal/lease", "internal/broker"}},
	"internal/identify":          {imports: []string{"internal/discord"}},
	"internal/coord/coordapi":    {},
	"internal/coord/coordclient": {imports: []string{"internal/coord/coordapi", "internal/identify", "internal/lease/kvlease"}, modules: []string{modWebsocket}},
	"internal/coord":             {imports: []string{"internal/coord/coordapi", "internal/broker", "internal/discord", "internal/shard", "internal/lease", "internal/lease/kvlease", "internal/identify"}, modules: []string{modWebsocket}},
	"internal/broker":            {modules: []string{modCompress}},
	"internal/broker/natsbroker": {imports: []string{"internal/broker"}, modules: []string{modCompress, modNATSServer, modNATSClient, modNKeys}},
	"internal/gateway":           {imports: []string{"internal/discord", "internal/discord/codec", "internal/identify", "internal/broker"}},
	"internal/dashboard":         {imports: []string{"internal/coord", "internal/coord/coordapi", "internal/broker"}},
	"internal/metrics":           {imports: []string{"internal/coord", "internal/gateway", "internal/broker"}, modules: []string{modPrometheus}},
	"client":                     {imports: []string{"internal/broker", "internal/discord"}, modules: []string{modNATSClient}},
	"examples/bot":               {imports: []string{"client"}},
}

// notTestSupport lists module packages whose names end in "test" but which are
// production code, with the reason. Production packages may import them, and
// like any production package they must not link testing or test support.
var notTestSupport = map[string]string{
	"internal/loadtest": "the load generator behind `gatehouse bench`, not a test double",
}

// TestLayersTable checks the table itself: every allowed import names a
// package of the table, and the allowed imports form no cycle.
func TestLayersTable(t *testing.T) {
	for name, l := range layers {
		if l.stdlibOnly && (len(l.imports) > 0 || len(l.modules) > 0 || l.anything) {
			t.Errorf("layers[%q] is stdlibOnly but allows more", name)
		}
		for _, imp := range l.imports {
			if _, ok := layers[imp]; !ok {
				t.Errorf("layers[%q] allows %q, which is not in the table", name, imp)
			}
		}
	}
	for name := range notTestSupport {
		if _, ok := layers[name]; !ok {
			t.Errorf("notTestSupport lists %q, which is not in the layers table", name)
		}
	}
	// Depth-first search for a cycle among allowed imports.
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var visit func(name string, stack []string)
	visit = func(name string, stack []string) {
		switch state[name] {
		case visiting:
			t.Errorf("layers has a cycle: %s", strings.Join(append(stack, name), " → "))
			return
		case done:
			return
		}
		state[name] = visiting
		for _, imp := range layers[name].imports {
			visit(imp, append(stack, name))
		}
		state[name] = done
	}
	for _, name := range sortedKeys(layers) {
		visit(name, nil)
	}
}

// TestDependencyDirection checks every package of the module against the
// layers table, the stdlib-only rule and the rule that production code never
// links test support.
func TestDependencyDirection(t *testing.T) {
	m := loadModule(t)
	// A package that does not load also fails go build and go vet, which
	// report it; here it is only named, and the rules below check whatever
	// import list go list could still read.
	for _, p := range m.all {
		if p.Error != nil {
			t.Logf("NOT CHECKED: package %s does not load (go build fails too): %s", m.rel(p.ImportPath), strings.TrimSpace(p.Error.Err))
		}
	}
	var checked []string
	for _, p := range m.own {
		rel := m.rel(p.ImportPath)
		checked = append(checked, rel)
		l, ok := layers[rel]
		if !ok {
			t.Errorf("package %s is not in the layers table in arch_test.go: add it with the module packages and third-party modules it may import (see docs/architecture.md)", rel)
			continue
		}
		for _, imp := range p.Imports {
			switch dep := m.byPath[imp]; {
			case imp == "C" || (dep != nil && dep.Standard):
				// Standard packages are always allowed.
			case m.isOwn(imp):
				if !l.anything && !slices.Contains(l.imports, m.rel(imp)) {
					t.Errorf("%s imports %s, which the layers table does not allow (allowed module imports: %s)", rel, m.rel(imp), listOrNone(l.imports))
				}
			default:
				mod := imp
				if dep != nil && dep.Module != nil {
					mod = dep.Module.Path
				}
				switch {
				case l.stdlibOnly:
					t.Errorf("%s imports %s (module %s), but it must use standard packages only", rel, imp, mod)
				case !l.anything && !slices.Contains(l.modules, mod):
					t.Errorf("%s imports %s from module %s, which the layers table does not allow (allowed modules: %s)", rel, imp, mod, listOrNone(l.modules))
				}
			}
		}
		if l.stdlibOnly {
			reported := map[string]bool{}
			for _, d := range p.Deps {
				dep := m.byPath[d]
				if dep == nil || dep.Standard || m.isOwn(d) {
					continue
				}
				mod := d
				if dep.Module != nil {
					mod = dep.Module.Path
				}
				if !reported[mod] {
					reported[mod] = true
					t.Errorf("%s must depend on standard packages only, but depends on module %s via %s", rel, mod, m.chain(p.ImportPath, d))
				}
			}
		}
		if !m.isTestSupport(p.ImportPath) {
			for _, d := range p.Deps {
				if m.isTestOnly(d) && !m.reportedBelow(p, d) {
					t.Errorf("%s depends on test support %s via %s; production packages must not import testing or *test packages", rel, m.rel(d), m.chain(p.ImportPath, d))
				}
			}
		}
	}
	t.Logf("checked %d packages: %s", len(checked), strings.Join(checked, ", "))
}

// TestLayersExact checks that the table allows nothing nobody uses: every
// entry is a package of the module, and every module package and
// third-party module it allows is imported by that package.
func TestLayersExact(t *testing.T) {
	m := loadModule(t)
	own := map[string]*goPackage{}
	for _, p := range m.own {
		own[m.rel(p.ImportPath)] = p
	}
	for _, name := range sortedKeys(layers) {
		l := layers[name]
		p, ok := own[name]
		if !ok {
			t.Errorf("layers[%q] names no package of the module; remove the entry", name)
			continue
		}
		usedPkg, usedMod := map[string]bool{}, map[string]bool{}
		for _, imp := range p.Imports {
			if m.isOwn(imp) {
				usedPkg[m.rel(imp)] = true
			} else if dep := m.byPath[imp]; dep != nil && dep.Module != nil {
				usedMod[dep.Module.Path] = true
			}
		}
		for _, imp := range l.imports {
			if !usedPkg[imp] {
				t.Errorf("layers[%q] allows %s, which it does not import; remove the allowance", name, imp)
			}
		}
		for _, mod := range l.modules {
			if !usedMod[mod] {
				t.Errorf("layers[%q] allows module %s, which it does not import; remove the allowance", name, mod)
			}
		}
	}
}

// TestNoBuildOutputs checks that no tracked file is a compiled program:
// binaries are built, never committed (.gitignore keeps them out).
func TestNoBuildOutputs(t *testing.T) {
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git not on PATH")
	}
	out, err := exec.Command(git, "ls-files", "-z").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	magics := [][]byte{
		[]byte("\x7fELF"),        // Linux, BSD
		{0xcf, 0xfa, 0xed, 0xfe}, // Mach-O 64-bit
		{0xfe, 0xed, 0xfa, 0xcf}, // Mach-O 64-bit, big-endian
		[]byte("MZ"),             // Windows PE
		[]byte("!<arch>\n"),      // archives, test binaries' objects
	}
	for name := range strings.SplitSeq(strings.TrimSuffix(string(out), "\x00"), "\x00") {
		if name == "" || strings.Contains(name, "testdata/") {
			continue
		}
		head := make([]byte, 8)
		f, err := os.Open(name)
		if err != nil {
			continue // deleted in the work tree
		}
		n, _ := io.ReadFull(f, head)
		f.Close()
		for _, mg := range magics {
			if n >= len(mg) && bytes.Equal(head[:len(mg)], mg) {
				t.Errorf("%s is a compiled binary; remove it from the repository (git rm --cached) and rebuild it instead", name)
			}
		}
	}
}

// TestPackageDocs checks that every package has exactly one package doc
// comment and that it starts the way go doc expects.
func TestPackageDocs(t *testing.T) {
	m := loadModule(t)
	fset := token.NewFileSet()
	for _, p := range m.own {
		rel := m.rel(p.ImportPath)
		var withDoc []string
		var doc string
		for _, name := range packageFiles(p) {
			f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Errorf("%s: %v", rel, err)
				continue
			}
			if f.Name.Name != p.Name || isIgnoredFile(f.Comments) {
				continue
			}
			if f.Doc != nil {
				withDoc = append(withDoc, name)
				doc = f.Doc.Text()
			}
		}
		want := docPrefixes(p)
		switch {
		case len(withDoc) == 0:
			t.Errorf("%s has no package doc comment; add one (in doc.go or the main file) starting %q", rel, want[0])
		case len(withDoc) > 1:
			t.Errorf("%s has %d package doc comments (in %s); keep exactly one", rel, len(withDoc), strings.Join(withDoc, ", "))
		case !hasDocPrefix(doc, want):
			first, _, _ := strings.Cut(doc, "\n")
			t.Errorf("%s: package doc in %s starts %q, want it to start %s", rel, withDoc[0], first, quoteAll(want))
		}
	}
}

// docPrefixes returns the accepted first words of p's package doc comment.
func docPrefixes(p *goPackage) []string {
	if p.Name != "main" {
		return []string{"Package " + p.Name}
	}
	cmd := path.Base(p.ImportPath)
	r, n := utf8.DecodeRuneInString(cmd)
	return []string{"Command " + cmd, string(unicode.ToUpper(r)) + cmd[n:]}
}

// hasDocPrefix reports whether doc starts with one of prefixes as whole words.
func hasDocPrefix(doc string, prefixes []string) bool {
	for _, p := range prefixes {
		rest, ok := strings.CutPrefix(doc, p)
		if !ok {
			continue
		}
		if r, _ := utf8.DecodeRuneInString(rest); rest == "" || unicode.IsSpace(r) || r == ',' || r == '.' {
			return true
		}
	}
	return false
}

// packageFiles lists the non-test Go files of p, including those excluded by
// build constraints for this platform.
func packageFiles(p *goPackage) []string {
	var files []string
	for _, f := range slices.Concat(p.GoFiles, p.CgoFiles, p.IgnoredGoFiles) {
		if strings.HasSuffix(f, ".go") && !strings.HasSuffix(f, "_test.go") {
			files = append(files, f)
		}
	}
	slices.Sort(files)
	return slices.Compact(files)
}

// isIgnoredFile reports whether the comments before a package clause hold a
// "//go:build ignore" line: such files are programs, not part of the package.
func isIgnoredFile(comments []*ast.CommentGroup) bool {
	for _, g := range comments {
		for _, c := range g.List {
			if strings.TrimSpace(c.Text) == "//go:build ignore" {
				return true
			}
		}
	}
	return false
}

// goPackage is the subset of `go list -json` output the tests use.
type goPackage struct {
	ImportPath     string
	Name           string
	Dir            string
	Standard       bool
	Module         *goModule
	GoFiles        []string
	CgoFiles       []string
	IgnoredGoFiles []string
	Imports        []string
	Deps           []string
	Error          *goError
}

type goModule struct {
	Path string
	Main bool
}

type goError struct {
	Err string
}

// module is the loaded package graph.
type module struct {
	path   string
	all    []*goPackage          // every package, dependencies included
	own    []*goPackage          // packages of this module with non-test Go files
	byPath map[string]*goPackage // all, by import path
}

// isTestSupport reports whether importPath names a test-support package: one
// whose last element ends in "test", like httptest, unless notTestSupport
// lists it.
func (m *module) isTestSupport(importPath string) bool {
	if _, ok := notTestSupport[m.rel(importPath)]; ok && m.isOwn(importPath) {
		return false
	}
	return strings.HasSuffix(path.Base(importPath), "test")
}

func (m *module) isOwn(importPath string) bool {
	return importPath == m.path || strings.HasPrefix(importPath, m.path+"/")
}

// rel returns importPath relative to the module root if it is in the module.
func (m *module) rel(importPath string) string {
	if importPath == m.path {
		return "."
	}
	if r, ok := strings.CutPrefix(importPath, m.path+"/"); ok {
		return r
	}
	return importPath
}

// isTestOnly reports whether production code must not depend on importPath:
// the testing package tree and any package named *test, except the Go
// distribution's internal packages (internal/synctest is linked into every
// binary).
func (m *module) isTestOnly(importPath string) bool {
	if importPath == "testing" || strings.HasPrefix(importPath, "testing/") {
		return true
	}
	if !m.isTestSupport(importPath) {
		return false
	}
	if dep := m.byPath[importPath]; dep != nil && dep.Standard {
		return !strings.HasPrefix(importPath, "internal/") && !strings.Contains(importPath, "/internal/")
	}
	return true
}

// reportedBelow reports whether p reaches the test-support package d through
// a production package of the module that it imports, which is then reported
// instead of p.
func (m *module) reportedBelow(p *goPackage, d string) bool {
	for _, imp := range p.Imports {
		q := m.byPath[imp]
		if q == nil || !m.isOwn(imp) || m.isTestSupport(imp) {
			continue
		}
		if slices.Contains(q.Imports, d) || slices.Contains(q.Deps, d) {
			return true
		}
	}
	return false
}

// chain returns the shortest import chain from one package to another, for
// error messages.
func (m *module) chain(from, to string) string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == to {
			var steps []string
			for s := to; s != ""; s = prev[s] {
				steps = append(steps, m.rel(s))
			}
			slices.Reverse(steps)
			return strings.Join(steps, " → ")
		}
		if p := m.byPath[cur]; p != nil {
			for _, imp := range p.Imports {
				if _, seen := prev[imp]; !seen {
					prev[imp] = cur
					queue = append(queue, imp)
				}
			}
		}
	}
	return m.rel(from) + " → … → " + m.rel(to)
}

var errNoGo = errors.New("go command not on PATH")

// loadModuleOnce runs `go list` once for all tests in this file.
var loadModuleOnce = sync.OnceValues(func() (*module, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return nil, errNoGo
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, gobin, "list", "-e", "-deps",
		"-json=ImportPath,Name,Dir,Standard,Module,GoFiles,CgoFiles,IgnoredGoFiles,Imports,Deps,Error",
		"./...")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go list: %v\n%s", err, stderr.Bytes())
	}
	m := &module{byPath: map[string]*goPackage{}}
	dec := json.NewDecoder(&stdout)
	for {
		p := new(goPackage)
		if err := dec.Decode(p); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("decoding go list output: %v", err)
		}
		m.all = append(m.all, p)
		m.byPath[p.ImportPath] = p
		if p.Module != nil && p.Module.Main {
			m.path = p.Module.Path
		}
	}
	if m.path == "" {
		return nil, fmt.Errorf("go list reported no package of the main module\n%s", stderr.Bytes())
	}
	for _, p := range m.all {
		if m.isOwn(p.ImportPath) && len(packageFiles(p)) > 0 {
			m.own = append(m.own, p)
		}
	}
	return m, nil
})

func loadModule(t *testing.T) *module {
	t.Helper()
	m, err := loadModuleOnce()
	if errors.Is(err, errNoGo) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func quoteAll(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = fmt.Sprintf("%q", v)
	}
	return strings.Join(q, " or ")
}
