package forms

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/errs"
)

// The expression language of calculated fields and show-if branching: a
// small, closed grammar, parsed into a tree and evaluated over a form's
// values, never code that runs. It reads like REDCap's branching logic and
// calculations, so that a data dictionary brought from REDCap keeps its
// meaning:
//
//	[age] >= 18 and ([sex] = '1' or [pregnant] <> '1')
//	round([weight] / ([height] / 100) ^ 2, 1)
//	if([smoker] = '1', [packs] * [years], 0)
//	datediff([visit_date], [birth_date], 'y')
//
// A field that is empty is blank: arithmetic with a blank is blank, and a
// comparison with a blank is true only for = '' and <> ''. Functions: if,
// round, abs, min, max, sum, mean, sqrt, datediff (unit 'd', 'M' or 'y'),
// isblank. Expressions are bounded: MaxExpression bytes and
// maxDepth levels of nesting.

// MaxExpression bounds the text of an expression.
const MaxExpression = 1000

const maxDepth = 32

// Expr is a parsed expression.
type Expr struct {
	src  string
	root node
	refs []string // the fields it reads, in order of first use
}

// String is the expression's text.
func (e *Expr) String() string { return e.src }

// Refs lists the fields the expression reads.
func (e *Expr) Refs() []string { return append([]string(nil), e.refs...) }

// value is a value of the language: blank, a number, a string or a truth.
type value struct {
	kind byte // 0 blank, 'n' number, 's' string, 'b' truth
	n    float64
	s    string
	b    bool
}

var blank = value{}

func num(f float64) value { return value{kind: 'n', n: f} }
func str(s string) value  { return value{kind: 's', s: s} }
func truth(b bool) value  { return value{kind: 'b', b: b} }

// asNumber reads v as a number, if it is one or a string that is one.
func (v value) asNumber() (float64, bool) {
	switch v.kind {
	case 'n':
		return v.n, true
	case 's':
		f, err := strconv.ParseFloat(strings.TrimSpace(v.s), 64)
		return f, err == nil && !math.IsInf(f, 0) && !math.IsNaN(f)
	case 'b':
		if v.b {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

func (v value) text() string {
	switch v.kind {
	case 'n':
		return strconv.FormatFloat(v.n, 'f', -1, 64)
	case 's':
		return v.s
	case 'b':
		if v.b {
			return "1"
		}
		return "0"
	}
	return ""
}

// truthy is how a show-if reads a value: a truth, a number other than 0;
// blank and text are false.
func (v value) truthy() bool {
	switch v.kind {
	case 'b':
		return v.b
	case 'n':
		return v.n != 0
	}
	return false
}

type node interface {
	eval(env *env) value
}

// env is what an evaluation reads: the form's values by field name.
type env struct {
	values func(name string) string
}

type (
	litNode struct{ v value }
	refNode struct{ name string }
	unNode  struct {
		op string
		x  node
	}
	binNode struct {
		op   string
		x, y node
	}
	callNode struct {
		fn   string
		args []node
	}
)

func (n litNode) eval(*env) value { return n.v }

func (n refNode) eval(e *env) value {
	s := e.values(n.name)
	if s == "" {
		return blank
	}
	return str(s)
}

func (n unNode) eval(e *env) value {
	x := n.x.eval(e)
	switch n.op {
	case "not":
		return truth(!x.truthy())
	case "-":
		if f, ok := x.asNumber(); ok {
			return num(-f)
		}
	}
	return blank
}

func (n binNode) eval(e *env) value {
	switch n.op {
	case "and":
		return truth(n.x.eval(e).truthy() && n.y.eval(e).truthy())
	case "or":
		return truth(n.x.eval(e).truthy() || n.y.eval(e).truthy())
	}
	x, y := n.x.eval(e), n.y.eval(e)
	switch n.op {
	case "=", "<>":
		eq := equal(x, y)
		return truth(eq == (n.op == "="))
	case "<", "<=", ">", ">=":
		a, aok := x.asNumber()
		b, bok := y.asNumber()
		if x.kind == 0 || y.kind == 0 || !aok || !bok {
			return truth(false)
		}
		switch n.op {
		case "<":
			return truth(a < b)
		case "<=":
			return truth(a <= b)
		case ">":
			return truth(a > b)
		}
		return truth(a >= b)
	}
	a, aok := x.asNumber()
	b, bok := y.asNumber()
	if !aok || !bok {
		return blank
	}
	var r float64
	switch n.op {
	case "+":
		r = a + b
	case "-":
		r = a - b
	case "*":
		r = a * b
	case "/":
		if b == 0 {
			return blank
		}
		r = a / b
	case "^":
		r = math.Pow(a, b)
	}
	if math.IsInf(r, 0) || math.IsNaN(r) {
		return blank
	}
	return num(r)
}

// equal compares as numbers when both sides are numbers, else as text:
// [sex] = '1' and [sex] = 1 agree, and a blank equals only ”.
func equal(x, y value) bool {
	if x.kind == 0 || y.kind == 0 {
		return x.text() == y.text()
	}
	a, aok := x.asNumber()
	b, bok := y.asNumber()
	if aok && bok {
		return a == b
	}
	return x.text() == y.text()
}

var functions = map[string][2]int{ // name → least and most arguments (-1: any)
	"if": {3, 3}, "round": {1, 2}, "abs": {1, 1}, "min": {1, -1}, "max": {1, -1},
	"sum": {1, -1}, "mean": {1, -1}, "sqrt": {1, 1}, "datediff": {3, 3}, "isblank": {1, 1},
}

func (n callNode) eval(e *env) value {
	switch n.fn {
	case "if":
		if n.args[0].eval(e).truthy() {
			return n.args[1].eval(e)
		}
		return n.args[2].eval(e)
	case "isblank":
		return truth(n.args[0].eval(e).kind == 0)
	case "datediff":
		return datediff(n.args[0].eval(e), n.args[1].eval(e), n.args[2].eval(e).text())
	}
	var xs []float64
	for _, a := range n.args {
		f, ok := a.eval(e).asNumber()
		if !ok {
			return blank
		}
		xs = append(xs, f)
	}
	switch n.fn {
	case "round":
		p := 0.0
		if len(xs) == 2 {
			p = math.Max(0, math.Min(10, math.Trunc(xs[1])))
		}
		m := math.Pow(10, p)
		return num(math.Round(xs[0]*m) / m)
	case "abs":
		return num(math.Abs(xs[0]))
	case "sqrt":
		if xs[0] < 0 {
			return blank
		}
		return num(math.Sqrt(xs[0]))
	case "min", "max", "sum", "mean":
		r := xs[0]
		s := 0.0
		for _, x := range xs {
			s += x
			if n.fn == "min" {
				r = math.Min(r, x)
			} else {
				r = math.Max(r, x)
			}
		}
		switch n.fn {
		case "sum":
			return num(s)
		case "mean":
			return num(s / float64(len(xs)))
		}
		return num(r)
	}
	return blank
}

// datediff is the time from a to b (dates YYYY-MM-DD or date-times),
// in days, months or years, as REDCap counts it.
func datediff(a, b value, unit string) value {
	ta, aok := parseWhen(a.text())
	tb, bok := parseWhen(b.text())
	if !aok || !bok {
		return blank
	}
	d := ta.Sub(tb).Hours() / 24
	if d < 0 {
		d = -d
	}
	switch unit {
	case "d":
		return num(math.Round(d*1000) / 1000)
	case "M":
		return num(math.Round(d/30.44*1000) / 1000)
	case "y":
		return num(math.Round(d/365.2425*1000) / 1000)
	}
	return blank
}

func parseWhen(s string) (time.Time, bool) {
	for _, layout := range []string{"2006-01-02", "2006-01-02 15:04", "2006-01-02T15:04", time.RFC3339} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// Parse reads an expression. A malformed one is errs.Invalid, naming where
// it goes wrong.
func Parse(src string) (*Expr, error) {
	if len(src) > MaxExpression {
		return nil, errs.E(errs.Invalid, "an expression holds at most %d characters", MaxExpression)
	}
	p := &parser{src: src}
	if err := p.lex(); err != nil {
		return nil, err
	}
	root, err := p.or(0)
	if err != nil {
		return nil, err
	}
	if p.i < len(p.toks) {
		return nil, p.fail("unexpected %q", p.toks[p.i].s)
	}
	return &Expr{src: src, root: root, refs: p.refs}, nil
}

// Eval evaluates e over values (a field's value by name, "" when blank),
// as text: a number without trailing zeros, "1" or "0" for a truth, "" for
// blank.
func (e *Expr) Eval(values func(name string) string) string {
	return e.root.eval(&env{values: values}).text()
}

// True evaluates e as a condition (show-if): true only for a true
// comparison or a number other than 0.
func (e *Expr) True(values func(name string) string) bool {
	return e.root.eval(&env{values: values}).truthy()
}

type token struct {
	kind byte // 'n' number, 's' string, 'r' field reference, 'w' word, 'o' operator, '(' ')' ','
	s    string
	pos  int
}

type parser struct {
	src  string
	toks []token
	i    int
	refs []string
}

func (p *parser) fail(format string, args ...any) error {
	pos := len(p.src)
	if p.i < len(p.toks) {
		pos = p.toks[p.i].pos
	}
	return errs.E(errs.Invalid, "expression %q, at character %d: %s", errs.Clip(p.src, 80), pos+1, fmt.Sprintf(format, args...))
}

func (p *parser) lex() error {
	s := p.src
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c >= '0' && c <= '9' || c == '.':
			j := i
			for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.') {
				j++
			}
			if _, err := strconv.ParseFloat(s[i:j], 64); err != nil {
				p.i = len(p.toks)
				p.toks = append(p.toks, token{pos: i})
				return p.fail("%q is not a number", s[i:j])
			}
			p.toks = append(p.toks, token{'n', s[i:j], i})
			i = j
		case c == '\'' || c == '"':
			j := strings.IndexByte(s[i+1:], c)
			if j < 0 {
				p.toks = append(p.toks, token{pos: i})
				p.i = len(p.toks) - 1
				return p.fail("a text is not closed")
			}
			p.toks = append(p.toks, token{'s', s[i+1 : i+1+j], i})
			i += j + 2
		case c == '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 || !validRef(s[i+1:i+j]) {
				p.toks = append(p.toks, token{pos: i})
				p.i = len(p.toks) - 1
				return p.fail("a field is written [name], or [form.name] for a field of another form of the visit, names of a-z, 0-9 and _")
			}
			p.toks = append(p.toks, token{'r', s[i+1 : i+j], i})
			i += j + 1
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			j := i
			for j < len(s) && (s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= '0' && s[j] <= '9' || s[j] == '_') {
				j++
			}
			p.toks = append(p.toks, token{'w', strings.ToLower(s[i:j]), i})
			i = j
		case c == '(' || c == ')' || c == ',':
			p.toks = append(p.toks, token{c, string(c), i})
			i++
		default:
			op := ""
			for _, o := range []string{"<>", "!=", "<=", ">=", "=", "<", ">", "+", "-", "*", "/", "^"} {
				if strings.HasPrefix(s[i:], o) {
					op = o
					break
				}
			}
			if op == "" {
				p.toks = append(p.toks, token{pos: i})
				p.i = len(p.toks) - 1
				return p.fail("%q is not part of the language", string(rune(c)))
			}
			if op == "!=" {
				op = "<>"
			}
			p.toks = append(p.toks, token{'o', op, i})
			i += len(op)
		}
	}
	return nil
}

func (p *parser) peek() token {
	if p.i < len(p.toks) {
		return p.toks[p.i]
	}
	return token{}
}

func (p *parser) word(w string) bool {
	if t := p.peek(); t.kind == 'w' && t.s == w {
		p.i++
		return true
	}
	return false
}

func (p *parser) op(ops ...string) (string, bool) {
	t := p.peek()
	if t.kind != 'o' {
		return "", false
	}
	for _, o := range ops {
		if t.s == o {
			p.i++
			return o, true
		}
	}
	return "", false
}

func (p *parser) deeper(d int) error {
	if d > maxDepth {
		return p.fail("nested more than %d deep", maxDepth)
	}
	return nil
}

func (p *parser) or(d int) (node, error) {
	if err := p.deeper(d); err != nil {
		return nil, err
	}
	x, err := p.and(d + 1)
	for err == nil && p.word("or") {
		var y node
		if y, err = p.and(d + 1); err == nil {
			x = binNode{"or", x, y}
		}
	}
	return x, err
}

func (p *parser) and(d int) (node, error) {
	x, err := p.not(d)
	for err == nil && p.word("and") {
		var y node
		if y, err = p.not(d); err == nil {
			x = binNode{"and", x, y}
		}
	}
	return x, err
}

func (p *parser) not(d int) (node, error) {
	if p.word("not") {
		if err := p.deeper(d + 1); err != nil {
			return nil, err
		}
		x, err := p.not(d + 1)
		return unNode{"not", x}, err
	}
	return p.cmp(d)
}

func (p *parser) cmp(d int) (node, error) {
	x, err := p.add(d)
	if err != nil {
		return nil, err
	}
	if op, ok := p.op("=", "<>", "<", "<=", ">", ">="); ok {
		y, err := p.add(d)
		return binNode{op, x, y}, err
	}
	return x, nil
}

func (p *parser) add(d int) (node, error) {
	x, err := p.mul(d)
	for err == nil {
		op, ok := p.op("+", "-")
		if !ok {
			break
		}
		var y node
		if y, err = p.mul(d); err == nil {
			x = binNode{op, x, y}
		}
	}
	return x, err
}

func (p *parser) mul(d int) (node, error) {
	x, err := p.pow(d)
	for err == nil {
		op, ok := p.op("*", "/")
		if !ok {
			break
		}
		var y node
		if y, err = p.pow(d); err == nil {
			x = binNode{op, x, y}
		}
	}
	return x, err
}

func (p *parser) pow(d int) (node, error) {
	x, err := p.unary(d)
	if err == nil {
		if _, ok := p.op("^"); ok {
			var y node
			if y, err = p.unary(d); err == nil {
				x = binNode{"^", x, y}
			}
		}
	}
	return x, err
}

func (p *parser) unary(d int) (node, error) {
	if _, ok := p.op("-"); ok {
		if err := p.deeper(d + 1); err != nil {
			return nil, err
		}
		x, err := p.unary(d + 1)
		return unNode{"-", x}, err
	}
	return p.primary(d)
}

func (p *parser) primary(d int) (node, error) {
	t := p.peek()
	switch t.kind {
	case 'n':
		p.i++
		f, _ := strconv.ParseFloat(t.s, 64)
		return litNode{num(f)}, nil
	case 's':
		p.i++
		return litNode{str(t.s)}, nil
	case 'r':
		p.i++
		if !contains(p.refs, t.s) {
			p.refs = append(p.refs, t.s)
		}
		return refNode{t.s}, nil
	case '(':
		p.i++
		x, err := p.or(d + 1)
		if err != nil {
			return nil, err
		}
		if p.peek().kind != ')' {
			return nil, p.fail("a ( is not closed")
		}
		p.i++
		return x, nil
	case 'w':
		switch t.s {
		case "true", "false":
			p.i++
			return litNode{truth(t.s == "true")}, nil
		}
		bounds, ok := functions[t.s]
		if !ok {
			return nil, p.fail("%q is not a function (known: if, round, abs, min, max, sum, mean, sqrt, datediff, isblank); a field is written [name]", t.s)
		}
		p.i++
		if p.peek().kind != '(' {
			return nil, p.fail("%s takes its arguments in ( )", t.s)
		}
		p.i++
		var args []node
		for p.peek().kind != ')' {
			if len(args) > 0 {
				if p.peek().kind != ',' {
					return nil, p.fail("arguments are separated by ,")
				}
				p.i++
			}
			a, err := p.or(d + 1)
			if err != nil {
				return nil, err
			}
			args = append(args, a)
			if len(args) > 50 {
				return nil, p.fail("%s takes at most 50 arguments", t.s)
			}
		}
		p.i++
		if len(args) < bounds[0] || bounds[1] >= 0 && len(args) > bounds[1] {
			return nil, p.fail("%s takes %s", t.s, arity(bounds))
		}
		return callNode{t.s, args}, nil
	case 0:
		return nil, p.fail("the expression ends too soon")
	}
	return nil, p.fail("unexpected %q", t.s)
}

func arity(b [2]int) string {
	switch {
	case b[1] < 0:
		return fmt.Sprintf("at least %d arguments", b[0])
	case b[0] == b[1]:
		return fmt.Sprintf("%d arguments", b[0])
	}
	return fmt.Sprintf("%d to %d arguments", b[0], b[1])
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// validName reports whether s is a field name: a lower-case letter, then
// up to 63 lower-case letters, digits and underscores.
// validRef reports whether s names a field: name, or form.name.
func validRef(s string) bool {
	if form, name, ok := strings.Cut(s, "."); ok {
		return validName(form) && validName(name)
	}
	return validName(s)
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}
