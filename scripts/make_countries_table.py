#!/usr/bin/env python
"""Derive agrinb/resources/countries.csv from the Natural Earth 1:50m admin-0 countries shapefile (public domain).

Usage: python scripts/make_countries_table.py [SHAPEFILE] [OUT_CSV]
Defaults: ../shared/data/natural_earth_50m/ne_50m_admin_0_countries.shp -> agrinb/resources/countries.csv

One row per polygon part (CropHarvest gives multipolygon countries one box per part). Parts are ordered by area,
largest first, so part 0 is the mainland. The country centre is the area-weighted centroid of its largest part,
computed in an equal-area projection (EPSG:6933). The shapefile has no .prj: its coordinates are WGS84 lon/lat.
Coordinates are rounded to `DECIMALS` places (about 0.1 m), which keeps the file small and exact enough that
`tests/test_geo.py` can compare Togo's box with the shapefile after the same rounding."""
import sys
from pathlib import Path
import numpy as np, pandas as pd, geopandas as gpd, shapely

DECIMALS = 6
ROOT = Path(__file__).resolve().parents[1]
SHP = ROOT.parent / 'shared' / 'data' / 'natural_earth_50m' / 'ne_50m_admin_0_countries.shp'
OUT = ROOT / 'agrinb' / 'resources' / 'countries.csv'
# Natural Earth marks a few ISO codes as -99 (disputed or special cases); give the recognised ones back.
ISO_FIXES = {'France': ('FR', 'FRA'), 'Norway': ('NO', 'NOR'), 'Kosovo': ('XK', 'XKX')}
ALIAS_COLUMNS = ['NAME', 'NAME_LONG', 'ADMIN']

def read_countries(shp=SHP)->gpd.GeoDataFrame:
    "The shapefile with its attribute table decoded as UTF-8 (there is no .cpg, so say so) and its CRS set."
    g = gpd.read_file(shp, encoding='utf-8')
    return g.set_crs('EPSG:4326') if g.crs is None else g

def iso_codes(row)->tuple[str, str]:
    a2, a3 = ISO_FIXES.get(row['NAME_EN'], (row['ISO_A2'], row['ISO_A3']))
    return ('' if a2 == '-99' else a2), ('' if a3 == '-99' else a3)

def country_rows(row)->list[dict]:
    "One dict per polygon part of one country."
    parts = list(shapely.get_parts(row.geometry))
    eq = gpd.GeoSeries(parts, crs='EPSG:4326').to_crs('EPSG:6933')
    order = np.argsort(-eq.area.values, kind='stable')
    centre = gpd.GeoSeries([eq.iloc[order[0]].centroid], crs='EPSG:6933').to_crs('EPSG:4326').iloc[0]
    a2, a3 = iso_codes(row)
    aliases = sorted({str(row[c]) for c in ALIAS_COLUMNS} - {row['NAME_EN'], '', 'None'})
    out = []
    for k, i in enumerate(order):
        min_lon, min_lat, max_lon, max_lat = parts[i].bounds
        out.append(dict(name=row['NAME_EN'], iso_a2=a2, iso_a3=a3, part=k, min_lon=min_lon, min_lat=min_lat,
                        max_lon=max_lon, max_lat=max_lat, center_lat=centre.y, center_lon=centre.x,
                        aliases='|'.join(aliases)))
    return out

def make_table(shp=SHP)->pd.DataFrame:
    g = read_countries(shp)
    df = pd.DataFrame([r for _, row in g.iterrows() for r in country_rows(row)])
    num = ['min_lon', 'min_lat', 'max_lon', 'max_lat', 'center_lat', 'center_lon']
    df[num] = df[num].round(DECIMALS)
    return df.sort_values(['name', 'part'], kind='stable').reset_index(drop=True)

if __name__ == '__main__':
    shp = Path(sys.argv[1]) if len(sys.argv) > 1 else SHP
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else OUT
    df = make_table(shp)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False, lineterminator='\n')
    print(f'{out}: {len(df)} boxes, {df.name.nunique()} countries, {out.stat().st_size/1024:.0f} KiB')
