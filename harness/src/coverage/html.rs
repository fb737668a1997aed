//! The HTML report: index.html (summary of every file) and one page per file (its functions,
//! then its source with each instrumented line coloured reached, partly reached or not).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use html_escape::encode_text as esc;

use super::report::{FileCoverage, Totals};

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}
th{background:#eee}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.sub td:first-child{padding-left:2em;font-style:italic}
.bar{display:inline-block;width:120px;height:10px;background:#f3b4b4;vertical-align:middle}
.bar span{display:block;height:10px;background:#5cb85c}
.hit{background:#c9f2c9}.partial{background:#fbeaa0}.miss{background:#f8c4c4}
.focus{font-weight:bold}.none{color:#999}
table.src{font-family:monospace;font-size:12px;white-space:pre;border:0}
table.src td{border:0;padding:0 6px}table.src td.ln{color:#888;text-align:right;user-select:none}
table.src td.ct{color:#555;text-align:right;min-width:3em}
.legend span{padding:1px 6px;margin-right:6px}
.note{color:#a40}";

fn pct(r: u32, t: u32) -> String {
    if t == 0 {
        "—".into()
    } else {
        format!("{:.0}%", 100.0 * r as f64 / t as f64)
    }
}

fn bar(r: u32, t: u32) -> String {
    let w = if t == 0 { 0.0 } else { 100.0 * r as f64 / t as f64 };
    format!("<span class=\"bar\"><span style=\"width:{w:.0}%\"></span></span>")
}

fn cells(out: &mut String, (r, t): (u32, u32)) {
    let _ = write!(out, "<td class=\"n\">{r} / {t}</td><td class=\"n\">{}</td>", pct(r, t));
}

/// The name of a file's page (`virt_kvm_guest_memfd.c.html`).
pub fn page_name(source: &Path) -> String {
    format!("{}.html", source.to_string_lossy().replace('/', "_"))
}

fn summary_row(out: &mut String, label: &str, link: Option<&str>, t: Totals, sub: bool, line_level: bool) {
    let name = match link {
        Some(l) => format!("<a href=\"{}\">{}</a>", esc(l), esc(label)),
        None => esc(label).into_owned(),
    };
    let _ = write!(out, "<tr{}><td>{name}</td>", if sub { " class=\"sub\"" } else { "" });
    cells(out, t.functions);
    if line_level {
        cells(out, t.lines);
    } else {
        out.push_str("<td class=\"n none\">—</td><td></td>");
    }
    cells(out, t.points);
    let _ = writeln!(
        out,
        "<td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
        bar(t.points.0, t.points.1),
        t.edges,
        t.inner_edges
    );
}

/// Writes index.html and a page per file into `dir`.
pub fn write(dir: &Path, title: &str, facts: &[String], files: &[FileCoverage]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut idx = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head><body><h1>{t}</h1>\n",
        t = esc(title)
    );
    for f in facts {
        let _ = writeln!(idx, "<p>{}</p>", esc(f));
    }
    idx.push_str("<table><tr><th>File</th><th>Functions reached</th><th></th><th>Lines reached</th><th></th><th>Coverage points reached</th><th></th><th></th><th>Edges</th><th>Inner</th></tr>\n");
    for file in files {
        let page = page_name(&file.source);
        let line_level = file.function_level.is_none();
        summary_row(&mut idx, &file.source.to_string_lossy(), Some(&page), file.file_totals(), false, line_level);
        if let Some(label) = file.focus_label {
            summary_row(&mut idx, label, None, file.totals(|f| f.focus), true, line_level);
        }
        write_page(dir, &page, file)?;
    }
    idx.push_str("</table>\n<p>A function counts when it has coverage points (calls of <code>__sanitizer_cov_trace_pc</code>) in this build; it is reached when one of them is. An edge is a pair of PCs one after the other in a trace (of PCs in KVM's ranges); a function's edges are the distinct edges reached that end at one of its points, its inner edges those of them that also start at one of its points (branches inside it: the others start wherever the trace was before, a caller but also the previous syscall's last KVM PC or the code a preemption notifier interrupted). Lines are those with points; a line is reached when one of its points is. A function's points are those on its own lines: code of a function of the file inlined into another counts for the inlined one (a point in code inlined from a header counts for the line of the file that called it).</p>\n");
    for file in files {
        if let Some(why) = &file.function_level {
            let _ = writeln!(idx, "<p class=\"note\">{}: per function only: {}</p>", esc(&file.source.to_string_lossy()), esc(why));
        }
        for n in &file.notes {
            let _ = writeln!(idx, "<p class=\"note\">{}: {}</p>", esc(&file.source.to_string_lossy()), esc(n));
        }
    }
    idx.push_str("</body></html>\n");
    std::fs::write(dir.join("index.html"), idx).with_context(|| format!("writing {}/index.html", dir.display()))
}

fn write_page(dir: &Path, page: &str, file: &FileCoverage) -> Result<()> {
    let source = file.source.to_string_lossy();
    let t = file.file_totals();
    let mut out = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{s}</title><style>{STYLE}</style></head><body><p><a href=\"index.html\">summary</a></p><h1>{s}</h1>\n",
        s = esc(&source)
    );
    let _ = writeln!(
        out,
        "<p>Functions reached {} / {}, lines {} / {}, coverage points {} / {}, edges {} ({} inner).</p>",
        t.functions.0, t.functions.1, t.lines.0, t.lines.1, t.points.0, t.points.1, t.edges, t.inner_edges
    );
    if let Some(why) = &file.function_level {
        let _ = writeln!(out, "<p class=\"note\">Per function only (no line numbers): {}</p>", esc(why));
    }
    if let Some(label) = file.focus_label {
        let _ = writeln!(out, "<p>Bold: {}.</p>", esc(label));
    }
    out.push_str(
        "<table><tr><th>Function</th><th>Line</th><th>Points reached</th><th></th><th>Lines reached</th><th></th><th></th><th>Edges</th><th>Inner</th></tr>\n",
    );
    for f in &file.functions {
        let name = esc(&f.name);
        let name = match f.line {
            Some(l) if file.function_level.is_none() => format!("<a href=\"#L{l}\">{name}</a>"),
            _ => name.into_owned(),
        };
        let class = match (f.focus, f.points) {
            (_, 0) => " class=\"none\"",
            (true, _) => " class=\"focus\"",
            _ => "",
        };
        let _ = write!(out, "<tr{class}><td>{name}</td><td class=\"n\">{}</td>", f.line.map_or(String::new(), |l| l.to_string()));
        if f.points == 0 {
            let _ = writeln!(out, "<td colspan=\"7\">{}</td></tr>", esc(f.remark.unwrap_or("no coverage points")));
            continue;
        }
        cells(&mut out, (f.reached, f.points));
        cells(&mut out, (f.lines_reached, f.lines));
        let _ = writeln!(
            out,
            "<td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            bar(f.reached, f.points),
            f.edges,
            f.inner_edges
        );
    }
    out.push_str("</table>\n");
    for n in &file.notes {
        let _ = writeln!(out, "<p class=\"note\">{}</p>", esc(n));
    }
    if let (Some(text), None) = (&file.text, &file.function_level) {
        out.push_str("<h2>Source</h2><p class=\"legend\"><span class=\"hit\">reached</span><span class=\"partial\">partly reached</span><span class=\"miss\">not reached</span>uncoloured: no coverage point. The count is points reached / points on the line.</p>\n<table class=\"src\">\n");
        for (i, line) in text.lines().enumerate() {
            let n = i as u32 + 1;
            let (class, count) = match file.lines.get(&n) {
                Some(&(total, reached)) => {
                    let c = if reached == 0 {
                        "miss"
                    } else if reached == total {
                        "hit"
                    } else {
                        "partial"
                    };
                    (c, format!("{reached}/{total}"))
                }
                None => ("", String::new()),
            };
            let _ = writeln!(
                out,
                "<tr id=\"L{n}\" class=\"{class}\"><td class=\"ln\">{n}</td><td class=\"ct\">{count}</td><td>{}</td></tr>",
                esc(line)
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("</body></html>\n");
    std::fs::write(dir.join(page), out).with_context(|| format!("writing {}/{page}", dir.display()))
}
