#!/usr/bin/env python
"""Derive agrinb/resources/borders.geojson from the Natural Earth 1:50m admin-0 countries shapefile (public domain).

Usage: python scripts/make_borders.py [SHAPEFILE] [OUT_GEOJSON]
Defaults: ../shared/data/natural_earth_50m/ne_50m_admin_0_countries.shp -> agrinb/resources/borders.geojson

The map widget draws these outlines as its offline base map, so a raster has context when zoomed out and when there
is no internet for tiles. Each country's (multi)polygon is simplified with `TOLERANCE` degrees (about 2 km at the
equator, far below a 1:50m line's own precision on screen at country zoom), parts smaller than `MIN_AREA` square
degrees are dropped (islets that become a dot), and coordinates are rounded to `DECIMALS` places, keeping the file
well under 1.5 MB. Properties: `name` (the same English name as countries.csv) and `iso_a3`."""
import json, sys
from pathlib import Path
import shapely
from make_countries_table import SHP, read_countries, iso_codes

TOLERANCE, MIN_AREA, DECIMALS = 0.02, 0.002, 3
OUT = Path(__file__).resolve().parents[1] / 'agrinb' / 'resources' / 'borders.geojson'

def simplified(geom):
    "The geometry simplified, its tiny parts dropped (the largest part is always kept), rounded."
    parts = sorted(shapely.get_parts(geom), key=lambda p: -p.area)
    keep = [p for i, p in enumerate(parts) if i == 0 or p.area >= MIN_AREA]
    g = shapely.MultiPolygon(keep).simplify(TOLERANCE, preserve_topology=True)
    return shapely.set_precision(g, 10 ** -DECIMALS, mode='pointwise')

def make_borders(shp=SHP)->dict:
    g = read_countries(shp)
    feats = []
    for _, row in g.sort_values('NAME_EN').iterrows():
        geom = simplified(row.geometry)
        if geom.is_empty: continue
        feats.append({'type': 'Feature', 'properties': {'name': row['NAME_EN'], 'iso_a3': iso_codes(row)[1]},
                      'geometry': shapely.geometry.mapping(geom)})
    return {'type': 'FeatureCollection', 'features': feats,
            'source': 'Natural Earth 1:50m admin-0 countries (public domain), simplified by scripts/make_borders.py'}

def _compact(o):
    "Round-trip through JSON with coordinates written as short numbers."
    return json.dumps(o, separators=(',', ':'), ensure_ascii=False)

if __name__ == '__main__':
    shp = Path(sys.argv[1]) if len(sys.argv) > 1 else SHP
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else OUT
    fc = make_borders(shp)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(_compact(fc) + '\n', encoding='utf-8')
    print(f'{out}: {len(fc["features"])} countries, {out.stat().st_size/1024:.0f} KiB')
