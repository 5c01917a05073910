#!/usr/bin/env python3
"""Independent reference totals for the Green Button (NAESB ESPI) sample files.

For every series (= MeterReading) in each file this prints the integer sum of
all IntervalReading/value and IntervalReading/cost, plus reading counts, the
time range and block ordering.  Only the Python standard library is used
(xml.etree.ElementTree).

Linking rules (Atom):
  * A MeterReading entry lists rel="related" links; one of them is the href of
    its IntervalBlock collection (standard) or, in Opower-style feeds, the
    href of an individual IntervalBlock entry.  Another related link is the
    ReadingType entry's rel="self" href.
  * An IntervalBlock entry is assigned to a MeterReading when
      1. its rel="up" href equals one of the MeterReading's related hrefs
         (standard ESPI), or
      2. its rel="self" href equals one of the MeterReading's related hrefs
         (Opower style: no "up" link; the MR points at the block directly), or
      3. its rel="related" href equals the MeterReading's rel="self" href
         (some exports, e.g. Elexicon / Enbridge, add this back-link).
  * hrefs are compared exactly first, then after normalisation (scheme and
    host stripped, trailing "/" removed).
  * A UsagePoint is associated with a MeterReading when one of the
    UsagePoint's related hrefs equals the MR's "up" href (the MeterReading
    collection) or the MR's "self" href.

A series is classified as electricity when its ReadingType commodity is 1 or 2
(electricity secondary/primary metered), or, if commodity is absent, when its
UsagePoint ServiceCategory/kind is 0.  Everything else is listed in a second,
informational section.

Usage:  python3 totals.py [file.xml ...]   (default: every *.xml next to it)
"""
import datetime
import glob
import os
import re
import sys
import xml.etree.ElementTree as ET

ATOM = "{http://www.w3.org/2005/Atom}"
ESPI = "{http://naesb.org/espi}"


def norm(href):
    if href is None:
        return None
    h = href.strip()
    h = re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/]+", "", h)
    return h.rstrip("/")


def utc(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def to_int(text):
    """ESPI value/cost are integers; tolerate stray whitespace."""
    return int(text.strip())


def to_time(text):
    # some real-world exports use fractional epoch seconds
    t = text.strip()
    return int(t) if re.fullmatch(r"-?\d+", t) else float(t)


def links(entry):
    out = {"self": [], "up": [], "related": []}
    for l in entry.findall(ATOM + "link"):
        rel = l.get("rel", "alternate")
        out.setdefault(rel, []).append(l.get("href"))
    return out


def content_children(entry):
    c = entry.find(ATOM + "content")
    return list(c) if c is not None else []


def local(tag):
    return tag.split("}", 1)[-1]


def analyse(path):
    root = ET.parse(path).getroot()
    entries = list(root.iter(ATOM + "entry"))
    mrs, blocks, rts, ups = [], [], {}, []
    for e in entries:
        lk = links(e)
        for child in content_children(e):
            kind = local(child.tag)
            if kind == "MeterReading":
                mrs.append({"entry": e, "links": lk, "title": e.findtext(ATOM + "title")})
            elif kind == "IntervalBlock":
                blocks.append({"el": child, "links": lk})
            elif kind == "ReadingType":
                rt = {local(c.tag): (c.text or "").strip() for c in child}
                for h in lk["self"]:
                    rts[h] = rt
                    rts[norm(h)] = rt
            elif kind == "UsagePoint":
                sk = child.find(ESPI + "ServiceCategory/" + ESPI + "kind")
                ups.append({"links": lk, "kind": (sk.text or "").strip() if sk is not None and sk.text else None,
                            "title": e.findtext(ATOM + "title")})

    # build lookup: href -> MR index
    def mr_keys(mr, which):
        hs = mr["links"].get(which, [])
        return set(hs) | {norm(h) for h in hs}

    assigned = {i: [] for i in range(len(mrs))}
    unassigned = 0
    for b in blocks:
        lk = b["links"]
        target = None
        for rule, rel, mrrel in ((1, "up", "related"), (2, "self", "related"), (3, "related", "self")):
            cands = set(lk.get(rel, []))
            cands |= {norm(h) for h in cands}
            hits = [i for i, mr in enumerate(mrs) if cands & mr_keys(mr, mrrel)]
            if len(hits) == 1:
                target = hits[0]
                break
        if target is None:
            unassigned += 1
        else:
            assigned[target].append(b["el"])

    results = []
    for i, mr in enumerate(mrs):
        rt = None
        for h in mr["links"].get("related", []):
            rt = rts.get(h) or rts.get(norm(h))
            if rt:
                break
        rt = rt or {}
        up_kind, up_title = None, None
        mrself = mr_keys(mr, "self") | mr_keys(mr, "up")
        for up in ups:
            rel = set(up["links"].get("related", []))
            rel |= {norm(h) for h in rel}
            if rel & mrself:
                up_kind, up_title = up["kind"], up["title"]
                break
        commodity = rt.get("commodity") or None
        if commodity in ("1", "2"):
            electric = True
        elif commodity is None and up_kind == "0":
            electric = True
        else:
            electric = False
        n = 0
        vsum = 0
        csum = 0
        ncost = 0
        nq = 0
        starts = []
        block_starts = []
        for blk in assigned[i]:
            bs = blk.find(ESPI + "interval/" + ESPI + "start")
            if bs is not None and bs.text:
                block_starts.append(to_time(bs.text))
            for ir in blk.findall(ESPI + "IntervalReading"):
                n += 1
                v = ir.find(ESPI + "value")
                if v is not None and v.text:
                    vsum += to_int(v.text)
                c = ir.find(ESPI + "cost")
                if c is not None and c.text:
                    csum += to_int(c.text)
                    ncost += 1
                nq += len(ir.findall(ESPI + "ReadingQuality"))
                s = ir.find(ESPI + "timePeriod/" + ESPI + "start")
                if s is not None and s.text:
                    starts.append(to_time(s.text))
        asc = all(block_starts[k] <= block_starts[k + 1] for k in range(len(block_starts) - 1))
        desc = all(block_starts[k] >= block_starts[k + 1] for k in range(len(block_starts) - 1))
        order = "single" if len(block_starts) < 2 else ("ascending" if asc else ("descending" if desc else "mixed"))
        results.append({
            "mr": (mr["links"].get("self") or ["?"])[0],
            "mr_title": mr["title"],
            "up_title": up_title,
            "service_kind": up_kind,
            "rt": rt,
            "electric": electric,
            "blocks": len(assigned[i]),
            "readings": n,
            "value_sum": vsum,
            "cost_sum": csum if ncost else None,
            "cost_count": ncost,
            "rq_count": nq,
            "first": utc(min(starts)) if starts else None,
            "last": utc(max(starts)) if starts else None,
            "order": order,
        })
    total_readings = sum(1 for _ in root.iter(ESPI + "IntervalReading"))
    return results, unassigned, len(blocks), total_readings


def fmt(r):
    rt = r["rt"]
    lines = [
        f"  MeterReading: {r['mr']}",
        f"    title={r['mr_title']!r} usagePoint={r['up_title']!r} ServiceCategory.kind={r['service_kind']}",
        "    ReadingType: commodity={} uom={} powerOfTenMultiplier={} intervalLength={} flowDirection={} kind={} accumulationBehaviour={} currency={}".format(
            rt.get("commodity"), rt.get("uom"), rt.get("powerOfTenMultiplier"), rt.get("intervalLength"),
            rt.get("flowDirection"), rt.get("kind"), rt.get("accumulationBehaviour"), rt.get("currency")),
        f"    IntervalBlocks={r['blocks']} (block order: {r['order']}) IntervalReadings={r['readings']} ReadingQuality elements={r['rq_count']}",
        f"    first reading start={r['first']}  last reading start={r['last']}",
        f"    SUM(value)={r['value_sum']}",
        "    SUM(cost)={}".format(f"{r['cost_sum']} (over {r['cost_count']} readings with <cost>)" if r["cost_sum"] is not None else "n/a (no <cost> elements)"),
    ]
    return "\n".join(lines)


NOTES = {
    "Elexicon_Electricity_NonInterval_2026-02-07_2026-03-09.xml":
        "the 86400 s series is a cumulative register read (accumulationBehaviour=1, timePeriod duration 0); "
        "its SUM(value) is a checksum only, not energy.",
}


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    files = argv[1:] or sorted(glob.glob(os.path.join(here, "*.xml")))
    for f in files:
        res, unassigned, nblocks, nreadings = analyse(f)
        print("=" * 78)
        print(f"FILE {os.path.basename(f)}")
        print(f"  IntervalBlocks in file={nblocks}, unassigned to any MeterReading={unassigned}, IntervalReadings in file={nreadings}")
        elec = [r for r in res if r["electric"]]
        other = [r for r in res if not r["electric"]]
        print(f"  -- electricity series: {len(elec)}")
        if r_note := NOTES.get(os.path.basename(f)):
            print(f"  note: {r_note}")
        for r in elec:
            print(fmt(r))
        if len(elec) > 1:
            print("  (no file-level electricity total: the series have different ReadingTypes and must not be added together)")
        elif elec:
            print("  ELECTRICITY FILE TOTAL: SUM(value)={} SUM(cost)={}".format(
                sum(r["value_sum"] for r in elec),
                sum(r["cost_sum"] or 0 for r in elec) if any(r["cost_sum"] is not None for r in elec) else "n/a"))
        if other:
            print(f"  -- non-electricity series (informational): {len(other)}")
            for r in other:
                print(fmt(r))
            print("  NON-ELECTRIC FILE TOTAL (all series added; meaningful only when they share uom/multiplier): SUM(value)={} SUM(cost)={}".format(
                sum(r["value_sum"] for r in other),
                sum(r["cost_sum"] or 0 for r in other) if any(r["cost_sum"] is not None for r in other) else "n/a"))


if __name__ == "__main__":
    main(sys.argv)
