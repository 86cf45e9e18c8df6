"""Export of results as Cloud-Optimized GeoTIFFs with GDAL (QGIS's own bindings)."""

from __future__ import annotations

import os
from typing import Dict, Optional

COG_OPTIONS = ["COMPRESS=DEFLATE", "PREDICTOR=YES", "BIGTIFF=IF_SAFER", "OVERVIEWS=AUTO",
               "RESAMPLING=AVERAGE"]


def export_cog(source: str, destination: str, overwrite: bool = True) -> str:
    """Write `source` as a Cloud-Optimized GeoTIFF at `destination` (metadata kept).

    Written to a temporary name first and renamed, so a failure leaves no partial file.
    """
    from osgeo import gdal

    if os.path.abspath(source) == os.path.abspath(destination):
        raise ValueError(f"{destination}: exporting a file onto itself")
    if os.path.exists(destination) and not overwrite:
        raise FileExistsError(destination)
    if gdal.GetDriverByName("COG") is None:
        raise RuntimeError("this GDAL has no COG driver (GDAL >= 3.1 is needed)")
    temporary = destination + ".part.tif"
    previous = gdal.GetUseExceptions()
    gdal.UseExceptions()
    try:
        dataset = gdal.Translate(temporary, source, format="COG", creationOptions=COG_OPTIONS)
        if dataset is None:
            raise RuntimeError(f"GDAL could not write {destination}: {gdal.GetLastErrorMsg()}")
        dataset = None
        os.replace(temporary, destination)
    except Exception:
        for path in (temporary, temporary + ".aux.xml"):
            if os.path.exists(path):
                os.remove(path)
        raise
    finally:
        if not previous:
            gdal.DontUseExceptions()
    return destination


def export_results(sr: str, uncertainty: Optional[str], folder: str, stem: str,
                   overwrite: bool = True) -> Dict[str, str]:
    """Export a run's SR (and uncertainty) as ``<stem>_sr.tif`` / ``<stem>_uncertainty.tif``
    COGs in `folder`. Returns {"sr": path, "uncertainty": path}."""
    os.makedirs(folder, exist_ok=True)
    written = {"sr": export_cog(sr, os.path.join(folder, f"{stem}_sr.tif"), overwrite)}
    if uncertainty:
        written["uncertainty"] = export_cog(
            uncertainty, os.path.join(folder, f"{stem}_uncertainty.tif"), overwrite)
    return written
