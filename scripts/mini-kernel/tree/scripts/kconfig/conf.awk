# SPDX-License-Identifier: GPL-2.0
# The Kconfig subset of the miniature tree (see scripts/kconfig/conf). POSIX awk (mawk, gawk, busybox).
# Input: -v kconfig=<top Kconfig> -v mode=… -v out=<dir>; the file operand is the config to read.
# Output files in <out>: config, auto.conf, autoconf.h, defconfig, new.

function die(msg) { printf "%s\n", msg > "/dev/stderr"; failed = 1; exit 1 }
function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
function unquote(s,   r) {
  s = trim(s)
  if (s !~ /^".*"$/) return s
  s = substr(s, 2, length(s) - 2)
  r = ""
  while (match(s, /\\./)) { r = r substr(s, 1, RSTART - 1) substr(s, RSTART + 1, 1); s = substr(s, RSTART + 2) }
  return r s
}
function quote(s) { gsub(/\\/, "\\\\", s); gsub(/"/, "\\\"", s); return "\"" s "\"" }
function block_dep(   i, d) {
  d = ""
  for (i = 1; i <= nblock; i++) if (block[i] != "") d = (d == "" ? "" : d " && ") "(" block[i] ")"
  return d
}
function add_item(s) { items[++nitems] = s }

# ---------------------------------------------------------------- parsing
function parse(file,   line, kw, rest, n, cond, v, pos, where, lineno) {
  lineno = 0
  while ((n = (getline line < file)) > 0) {
    lineno++
    where = file ":" lineno
    if (inhelp) {
      if (line ~ /^[ \t]/ || line ~ /^$/) continue
      inhelp = 0
    }
    sub(/#.*$/, "", line)
    if (line ~ /^[ \t]*$/) continue
    line = trim(line)
    kw = line; sub(/[ \t].*$/, "", kw)
    rest = substr(line, length(kw) + 1); rest = trim(rest)
    if (kw == "source") { parse(unquote(rest)); continue }
    if (kw == "mainmenu") continue
    if (kw == "menu") { cur = ""; nblock++; block[nblock] = ""; menu_open = 1; add_item("M" unquote(rest)); continue }
    if (kw == "endmenu") { cur = ""; nblock--; add_item("E"); continue }
    if (kw == "if") { cur = ""; nblock++; block[nblock] = rest; continue }
    if (kw == "endif") { cur = ""; nblock--; continue }
    if (kw == "comment") { cur = ""; add_item("C" unquote(rest)); continue }
    if (kw == "choice" || kw == "endchoice") die(where ": choice blocks are not supported by the miniature Kconfig")
    if (kw == "config" || kw == "menuconfig") {
      cur = rest
      if (cur !~ /^[A-Za-z0-9_]+$/) die(where ": bad symbol name '" cur "'")
      if (!(cur in type)) { nsym++; sym[nsym] = cur; add_item("S" cur) }
      type[cur] = ""; prompt[cur] = 0; dep[cur] = block_dep(); ndef[cur] = 0
      menu_open = 0
      continue
    }
    if (cur == "") {
      if (kw == "depends" && menu_open) { sub(/^on[ \t]+/, "", rest); block[nblock] = rest; continue }
      if (kw == "visible") continue
      die(where ": '" kw "' outside a config entry")
    }
    if (kw == "bool" || kw == "tristate" || kw == "string" || kw == "int" || kw == "hex") {
      type[cur] = kw
      if (rest ~ /^"/) prompt[cur] = 1
      continue
    }
    if (kw == "def_bool" || kw == "def_tristate") {
      type[cur] = substr(kw, 5)
      ndef[cur]++; cond = ""
      if (match(rest, /[ \t]if[ \t]/)) { cond = substr(rest, RSTART + 4); rest = substr(rest, 1, RSTART - 1) }
      defval[cur, ndef[cur]] = trim(rest); defcond[cur, ndef[cur]] = trim(cond)
      continue
    }
    if (kw == "prompt") { prompt[cur] = 1; continue }
    if (kw == "default") {
      ndef[cur]++; cond = ""
      if (match(rest, /[ \t]if[ \t]/)) { cond = substr(rest, RSTART + 4); rest = substr(rest, 1, RSTART - 1) }
      defval[cur, ndef[cur]] = trim(rest); defcond[cur, ndef[cur]] = trim(cond)
      continue
    }
    if (kw == "depends") {
      sub(/^on[ \t]+/, "", rest)
      dep[cur] = (dep[cur] == "" ? "" : dep[cur] " && ") "(" rest ")"
      continue
    }
    if (kw == "help" || kw == "---help---") { inhelp = 1; continue }
    if (kw == "select" || kw == "imply" || kw == "range" || kw == "option" || kw == "modules" || kw == "transitional") continue
    die(where ": unknown Kconfig keyword '" kw "'")
  }
  if (n < 0) die("cannot read " file)
  close(file)
}

# ---------------------------------------------------------------- expressions (n=0, m=1, y=2)
function tokenize(s,   t) {
  ntok = 0; tpos = 1
  while (s != "") {
    sub(/^[ \t]+/, "", s)
    if (s == "") break
    if (match(s, /^(&&|\|\||!=|[!()=])/) || match(s, /^[A-Za-z0-9_]+/) || match(s, /^"[^"]*"/)) {
      tok[++ntok] = substr(s, 1, RLENGTH); s = substr(s, RLENGTH + 1)
    } else die("bad expression near '" s "'")
  }
}
function tri(v) { return v == "y" ? 2 : (v == "m" ? 1 : 0) }
function strval(t) {
  if (t ~ /^"/) return unquote(t)
  if (t in type) return val[t]
  return t
}
function primary(   t, a, b, op) {
  t = tok[tpos++]
  if (t == "!") return 2 - primary()
  if (t == "(") { a = orexpr(); if (tok[tpos++] != ")") die("missing ) in expression"); return a }
  if (tok[tpos] == "=" || tok[tpos] == "!=") {
    op = tok[tpos++]; b = tok[tpos++]
    a = (strval(t) == strval(b)) ? 2 : 0
    return op == "=" ? a : 2 - a
  }
  if (t == "y" || t == "m" || t == "n") return tri(t)
  if (t in type) {
    if (type[t] == "bool" || type[t] == "tristate") return tri(val[t])
    return 0
  }
  return 0   # an unknown symbol is n, as in kconfig
}
function andexpr(   a, b) { a = primary(); while (tok[tpos] == "&&") { tpos++; b = primary(); if (b < a) a = b }; return a }
function orexpr(   a, b) { a = andexpr(); while (tok[tpos] == "||") { tpos++; b = andexpr(); if (b > a) a = b }; return a }
function evalexpr(s,   r) {
  if (s == "") return 2
  tokenize(s)
  tok[ntok + 1] = ""
  r = orexpr()
  if (tpos <= ntok) die("trailing tokens in expression '" s "'")
  return r
}
function tristr(x) { return x == 2 ? "y" : (x == 1 ? "m" : "n") }

# The default of s given the values so far ("" if none).
function default_of(s,   k, v) {
  for (k = 1; k <= ndef[s]; k++) {
    if (evalexpr(defcond[s, k]) == 0) continue
    v = defval[s, k]
    if (type[s] == "bool" || type[s] == "tristate") return tristr(evalexpr(v))
    return strval(v)
  }
  if (type[s] == "bool" || type[s] == "tristate") return "n"
  return ""
}
function clamp(s, v, d) {
  if (type[s] == "bool") { if (v == "m") v = "y"; if (v != "y") v = "n"; if (d == 0) v = "n" }
  if (type[s] == "tristate") {
    if (v != "y" && v != "m") v = "n"
    if (v == "m" && val["MODULES"] != "y") v = "y"
    if (tri(v) > d) v = tristr(d)
  }
  return v
}
function valid_user(s, v) {
  if (type[s] == "bool") return v == "y" || v == "n"
  if (type[s] == "tristate") return v == "y" || v == "m" || v == "n"
  if (type[s] == "int") return v ~ /^-?[0-9]+$/
  if (type[s] == "hex") return v ~ /^0[xX][0-9a-fA-F]+$/
  return 1
}

function compute(   i, s, d, v, pass) {
  for (pass = 1; pass <= 2; pass++) {
    for (i = 1; i <= nsym; i++) {
      s = sym[i]
      d = evalexpr(dep[s])
      depv[s] = d
      visible[s] = prompt[s] && d > 0
      defv[s] = clamp(s, default_of(s), d)
      if (visible[s] && (s in user) && valid_user(s, user[s])) v = clamp(s, user[s], d)
      else v = defv[s]
      if (d == 0) v = (type[s] == "bool" || type[s] == "tristate") ? "n" : ""
      val[s] = v
      isnew[s] = visible[s] && !(s in user)
    }
  }
}

function line_for(s, v) {
  if (type[s] == "bool" || type[s] == "tristate") return v == "n" ? "# CONFIG_" s " is not set" : "CONFIG_" s "=" v
  if (type[s] == "string") return "CONFIG_" s "=" quote(v)
  return "CONFIG_" s "=" v
}
function written(s) {
  if (depv[s] == 0) return 0
  if ((type[s] == "bool" || type[s] == "tristate") && val[s] == "n" && !visible[s]) return 0
  if ((type[s] == "int" || type[s] == "hex") && val[s] == "") return 0
  return 1
}

function write_all(   i, it, s, title, f, h, a, d, ntitle, titles) {
  title = "Linux/" arch (kver == "" ? "" : " " kver) " Kernel Configuration"
  f = out "/config"; a = out "/auto.conf"; h = out "/autoconf.h"; d = out "/defconfig"
  printf "#\n# Automatically generated file; DO NOT EDIT.\n# %s\n#\n", title > f
  printf "#\n# Automatically generated file; DO NOT EDIT.\n# %s\n#\n", title > a
  printf "/*\n * Automatically generated file; DO NOT EDIT.\n * %s\n */\n", title > h
  printf "" > d
  printf "" > (out "/new")
  ntitle = 0
  for (i = 1; i <= nitems; i++) {
    it = items[i]
    if (it ~ /^M/) { titles[++ntitle] = substr(it, 2); printf "\n#\n# %s\n#\n", substr(it, 2) > f; continue }
    if (it ~ /^E/) { printf "# end of %s\n", titles[ntitle--] > f; continue }
    if (it ~ /^C/) { printf "\n#\n# %s\n#\n", substr(it, 2) > f; continue }
    s = substr(it, 2)
    if (!written(s)) continue
    print line_for(s, val[s]) > f
    if (isnew[s]) print "CONFIG_" s "=" (type[s] == "string" ? quote(val[s]) : val[s]) > (out "/new")
    if (visible[s] && val[s] != defv[s]) print line_for(s, val[s]) > d
    if (type[s] == "bool" || type[s] == "tristate") {
      if (val[s] == "y") { print "CONFIG_" s "=y" > a; print "#define CONFIG_" s " 1" > h }
      if (val[s] == "m") { print "CONFIG_" s "=m" > a; print "#define CONFIG_" s "_MODULE 1" > h }
    } else if (type[s] == "string") {
      print "CONFIG_" s "=" quote(val[s]) > a; print "#define CONFIG_" s " " quote(val[s]) > h
    } else {
      print "CONFIG_" s "=" val[s] > a; print "#define CONFIG_" s " " val[s] > h
    }
  }
  close(f); close(a); close(h); close(d); close(out "/new")
}

BEGIN {
  nsym = 0; nitems = 0; nblock = 0; cur = ""; inhelp = 0; failed = 0
  parse(kconfig)
  for (i = 1; i <= nsym; i++) if (type[sym[i]] == "") die("Kconfig: symbol " sym[i] " has no type")
}
/^CONFIG_[A-Za-z0-9_]+=/ {
  name = substr($0, 8); eq = index(name, "="); v = substr(name, eq + 1); name = substr(name, 1, eq - 1)
  if (name in type) user[name] = unquote(v)
  next
}
/^# CONFIG_[A-Za-z0-9_]+ is not set$/ {
  name = $2; sub(/^CONFIG_/, "", name)
  if (name in type) user[name] = "n"
  next
}
END {
  if (failed) exit 1
  compute()
  write_all()
}
