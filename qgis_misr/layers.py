"""QGIS layers in and out: what validation needs from a layer, and the styled result group.

Everything here runs on the GUI (main) thread.
"""

from __future__ import annotations

import datetime as _dt
import os
from typing import List, Optional, Tuple

from qgis.core import (
    QgsColorRampShader,
    QgsContrastEnhancement,
    QgsLayerTreeGroup,
    QgsMapLayer,
    QgsMultiBandColorRenderer,
    QgsProject,
    QgsRasterLayer,
    QgsRasterRenderer,
    QgsSingleBandGrayRenderer,
    QgsSingleBandPseudoColorRenderer,
)

from .core.grid import read_grid
from .core.naming import parse_date, parse_metadata_date, unique_name, with_frames_used
from .core.params import RasterInfo
from .resources import style_path

SR_STYLE = "misr_sr.qml"
UNCERTAINTY_STYLE = "misr_uncertainty.qml"
UNCERTAINTY_OPACITY = 0.6
CUT = (0.02, 0.98)
ROLE = "misr/role"
RUN = "misr/run"
SR_PATH = "misr/sr_path"
UNCERTAINTY_PATH = "misr/uncertainty_path"


def layer_file(layer: QgsRasterLayer) -> Optional[str]:
    """The local file (or /vsi path) a GDAL raster layer reads, None for other providers."""
    if layer.providerType() != "gdal":
        return None
    path = layer.source().split("|")[0]
    if path.startswith("/vsi") or os.path.isfile(path):
        return path
    return None


def raster_info(layer: QgsRasterLayer) -> RasterInfo:
    """What validation and the engine command line need of `layer`; for a local file, its CRS
    and geotransform as GDAL reads them (what the engine compares), else QGIS's."""
    crs = layer.crs()
    path = layer_file(layer)
    grid = read_grid(path) if path else None
    if grid is not None:
        crs_name, crs_wkt, geotransform = (crs.authid() if grid.crs else ""), grid.crs, grid.geotransform
    else:
        crs_name, crs_wkt, geotransform = crs.authid(), (crs.toWkt() if crs.isValid() else ""), None
    extent = layer.extent()
    provider = layer.dataProvider()
    nodata = provider.sourceNoDataValue(1) if provider is not None and provider.sourceHasNoDataValue(1) else None
    return RasterInfo(
        name=layer.name(), path=path, crs=crs_name, crs_wkt=crs_wkt, geotransform=geotransform,
        extent=(extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum()),
        width=layer.width(), height=layer.height(),
        pixel_size=(abs(layer.rasterUnitsPerPixelX()), abs(layer.rasterUnitsPerPixelY())),
        band_count=layer.bandCount(), provider=layer.providerType(), layer_id=layer.id(), nodata=nodata)


def layer_date(layer: QgsRasterLayer) -> Optional[_dt.date]:
    """The acquisition date of `layer`: from its name, its file name, or its metadata."""
    date = parse_date(layer.name())
    path = layer_file(layer)
    if date is None and path:
        date = parse_date(os.path.basename(path))
    if date is None:
        temporal = layer.temporalProperties()
        if temporal is not None and temporal.isActive():
            begin = temporal.fixedTemporalRange().begin()
            if begin.isValid():
                return _dt.date(begin.date().year(), begin.date().month(), begin.date().day())
    if date is None and path:
        try:
            from osgeo import gdal
            dataset = gdal.Open(path)
            if dataset is not None:
                items = dict(dataset.GetMetadata() or {})
                if dataset.RasterCount:
                    items.update(dataset.GetRasterBand(1).GetMetadata() or {})
                date = parse_metadata_date(items)
        except Exception:
            date = None
    return date


def renderer_min_max(layer: QgsRasterLayer, band: int = 1) -> Optional[Tuple[float, float]]:
    """The min/max the layer's renderer stretches `band` to, when it has one."""
    renderer = layer.renderer()
    enhancement = None
    if isinstance(renderer, QgsSingleBandGrayRenderer):
        enhancement = renderer.contrastEnhancement()
    elif isinstance(renderer, QgsSingleBandPseudoColorRenderer):
        low, high = renderer.classificationMin(), renderer.classificationMax()
        return (low, high) if high > low else None
    elif isinstance(renderer, QgsMultiBandColorRenderer):
        for number, get in ((renderer.redBand(), renderer.redContrastEnhancement),
                            (renderer.greenBand(), renderer.greenContrastEnhancement),
                            (renderer.blueBand(), renderer.blueContrastEnhancement)):
            if number == band:
                enhancement = get()
                break
    if enhancement is None:
        return None
    low, high = enhancement.minimumValue(), enhancement.maximumValue()
    return (low, high) if high > low else None


def cumulative_cut(layer: QgsRasterLayer, band: int = 1, cut: Tuple[float, float] = CUT
                   ) -> Tuple[float, float]:
    low, high = layer.dataProvider().cumulativeCut(band, cut[0], cut[1])
    return float(low), float(high)


COLOUR_NAMES = {"red": ("red", "b04", "b4"), "green": ("green", "b03", "b3"), "blue": ("blue", "b02", "b2")}
"""Band descriptions known to be red, green, blue: the words, and the Sentinel-2 and Landsat 8-9
band names (Landsat 4-7 number them otherwise: set their colour interpretation instead)."""


def true_colour_bands(path: Optional[str]) -> Optional[Tuple[int, int, int]]:
    """The band numbers of red, green and blue in the raster at `path` when its bands say so (GDAL
    colour interpretation, else their descriptions; see COLOUR_NAMES), else None."""
    if not path:
        return None
    from osgeo import gdal
    try:
        dataset = gdal.Open(path)
    except RuntimeError:
        return None
    if dataset is None:
        return None
    found = {}
    interpretations = {gdal.GCI_RedBand: "red", gdal.GCI_GreenBand: "green", gdal.GCI_BlueBand: "blue"}
    for number in range(1, dataset.RasterCount + 1):
        band = dataset.GetRasterBand(number)
        colour = interpretations.get(band.GetColorInterpretation())
        name = band.GetDescription().strip().lower()
        colour = colour or next((c for c, names in COLOUR_NAMES.items() if name in names), None)
        if colour and colour not in found:
            found[colour] = number
    return (found["red"], found["green"], found["blue"]) if len(found) == 3 else None


def style_rgb_layer(layer: QgsRasterLayer) -> Tuple[int, int, int]:
    """An RGB rendering of a 3-band SR: true colour when its bands are known to be red, green and
    blue (``true_colour_bands``), else bands 1, 2, 3; each stretched to its 2-98 % cumulative
    cut. Returns the (red, green, blue) band numbers."""
    bands = true_colour_bands(layer_file(layer)) or (1, 2, 3)
    provider = layer.dataProvider()
    renderer = QgsMultiBandColorRenderer(provider, *bands)
    for number, setter in zip(bands, (renderer.setRedContrastEnhancement, renderer.setGreenContrastEnhancement,
                                      renderer.setBlueContrastEnhancement)):
        low, high = cumulative_cut(layer, number)
        enhancement = QgsContrastEnhancement(provider.dataType(number))
        enhancement.setContrastEnhancementAlgorithm(
            QgsContrastEnhancement.ContrastEnhancementAlgorithm.StretchToMinimumMaximum)
        enhancement.setMinimumValue(low)
        enhancement.setMaximumValue(high if high > low else low + 1.0)
        setter(enhancement)
    layer.setRenderer(renderer)
    layer.triggerRepaint()
    return bands


def style_sr_layer(layer: QgsRasterLayer, reference: Optional[QgsRasterLayer] = None,
                   reference_band: int = 1) -> Tuple[float, float]:
    """Grey stretch for the SR layer: the min/max of the input layer's renderer, or a
    2-98 % cumulative cut of the SR itself. Returns the stretch used. A 3-band SR is rendered in
    colour instead (``style_rgb_layer``; the stretch returned is then its first band's)."""
    if layer.bandCount() == 3:
        return cumulative_cut(layer, style_rgb_layer(layer)[0])
    layer.loadNamedStyle(style_path(SR_STYLE))
    limits = renderer_min_max(reference, reference_band) if reference is not None else None
    if limits is None:
        limits = cumulative_cut(layer)
    styled = layer.renderer()
    renderer = QgsSingleBandGrayRenderer(layer.dataProvider(), 1)
    if isinstance(styled, QgsSingleBandGrayRenderer):
        renderer = styled.clone()
    enhancement = QgsContrastEnhancement(layer.dataProvider().dataType(1))
    enhancement.setContrastEnhancementAlgorithm(
        QgsContrastEnhancement.ContrastEnhancementAlgorithm.StretchToMinimumMaximum)
    enhancement.setMinimumValue(limits[0])
    enhancement.setMaximumValue(limits[1])
    renderer.setContrastEnhancement(enhancement)
    _apply(layer, renderer)
    return limits


def _apply(layer: QgsRasterLayer, renderer: QgsRasterRenderer) -> None:
    """Give `layer` its finished renderer with setRenderer, which makes the layer tree rebuild
    its legend: a layer Processing has already added would otherwise keep the legend of the
    style file (for the uncertainty: 0-1) when its renderer is changed in place."""
    layer.setRenderer(renderer)
    layer.triggerRepaint()


def _label(value: float, span: float) -> str:
    if span <= 0:
        return f"{value:g}"
    digits = max(0, 2 - int(_floor_log10(span)))
    return f"{value:.{digits}f}"


def _floor_log10(value: float) -> float:
    import math
    return math.floor(math.log10(value)) if value > 0 else 0


def _set_legend_decimals(function: QgsColorRampShader, span: float) -> None:
    """Continuous legend labels with 3 significant digits of the range (not 6 decimals)."""
    try:
        from qgis.core import QgsBasicNumericFormat, QgsColorRampLegendNodeSettings
    except ImportError:  # QGIS < 3.18
        return
    settings = QgsColorRampLegendNodeSettings(function.legendSettings()) \
        if function.legendSettings() is not None else QgsColorRampLegendNodeSettings()
    number_format = QgsBasicNumericFormat()
    number_format.setNumberDecimalPlaces(max(0, 2 - int(_floor_log10(span))) if span > 0 else 3)
    number_format.setShowTrailingZeros(False)
    settings.setNumericFormat(number_format)
    function.setLegendSettings(settings)


def style_uncertainty_layer(layer: QgsRasterLayer) -> Tuple[float, float]:
    """Continuous colour ramp (from the shipped .qml) rescaled to the layer's 2-98 % range,
    legend labels in the input's units, semi-transparent. Returns the range used."""
    layer.loadNamedStyle(style_path(UNCERTAINTY_STYLE))
    low, high = cumulative_cut(layer)
    if not high > low:
        high = low + (abs(low) or 1.0) * 1e-3
    renderer = layer.renderer()
    if not isinstance(renderer, QgsSingleBandPseudoColorRenderer):
        raise RuntimeError(f"{style_path(UNCERTAINTY_STYLE)}: not a pseudocolor style")
    renderer = renderer.clone()
    shader = renderer.shader()
    function = shader.rasterShaderFunction() if shader is not None else None
    items: List[QgsColorRampShader.ColorRampItem] = []
    if isinstance(function, QgsColorRampShader):
        items = list(function.colorRampItemList())
    if len(items) < 2:
        raise RuntimeError(f"{style_path(UNCERTAINTY_STYLE)}: no colour ramp in the style")
    old_low, old_high = items[0].value, items[-1].value
    old_span = (old_high - old_low) or 1.0
    rescaled = []
    for item in items:
        value = low + (item.value - old_low) / old_span * (high - low)
        rescaled.append(QgsColorRampShader.ColorRampItem(value, item.color, _label(value, high - low)))
    function.setColorRampItemList(rescaled)
    _set_legend_decimals(function, high - low)
    function.setMinimumValue(low)
    function.setMaximumValue(high)
    renderer.setClassificationMin(low)
    renderer.setClassificationMax(high)
    renderer.setOpacity(UNCERTAINTY_OPACITY)
    _apply(layer, renderer)
    return low, high


def tag_layer(layer: QgsRasterLayer, role: str, run: str, sr: str, uncertainty: str) -> None:
    layer.setCustomProperty(RUN, run)
    layer.setCustomProperty(SR_PATH, sr)
    layer.setCustomProperty(UNCERTAINTY_PATH, uncertainty or "")
    layer.setCustomProperty(ROLE, role)  # last: it marks the layer as a result


def is_result_layer(layer: QgsMapLayer) -> bool:
    return bool(layer.customProperty(ROLE, ""))


def add_results(project: QgsProject, run: str, sr_path: str, uncertainty_path: Optional[str],
                reference: Optional[QgsRasterLayer] = None, reference_band: int = 1
                ) -> Tuple[QgsLayerTreeGroup, QgsRasterLayer, Optional[QgsRasterLayer]]:
    """A layer group named `run` at the top of the layer tree: the uncertainty (if any) over the
    SR, both styled. Raises RuntimeError when a file cannot be opened."""
    sr = QgsRasterLayer(sr_path, "Super-resolved x3", "gdal")
    if not sr.isValid():
        raise RuntimeError(f"cannot open the SR result {sr_path}")
    uncertainty = None
    if uncertainty_path:
        uncertainty = QgsRasterLayer(uncertainty_path, "Uncertainty (expected abs. error, input units)",
                                     "gdal")
        if not uncertainty.isValid():
            raise RuntimeError(f"cannot open the uncertainty result {uncertainty_path}")
    style_sr_layer(sr, reference, reference_band)
    tag_layer(sr, "sr", run, sr_path, uncertainty_path or "")
    group = project.layerTreeRoot().insertGroup(0, run)
    if uncertainty is not None:
        style_uncertainty_layer(uncertainty)
        tag_layer(uncertainty, "uncertainty", run, sr_path, uncertainty_path or "")
        project.addMapLayer(uncertainty, False)
        group.addLayer(uncertainty)
    project.addMapLayer(sr, False)
    group.addLayer(sr)
    return group, sr, uncertainty


def top_level_group_names(project: QgsProject) -> List[str]:
    root = project.layerTreeRoot()
    return [node.name() for node in root.children() if isinstance(node, QgsLayerTreeGroup)]


def result_group_name(project: QgsProject, planned: str, frames_used: Optional[int]) -> str:
    """The name of a run's layer group: the planned run name saying how many frames the engine
    really used, made unique among the project's top-level groups."""
    return unique_name(with_frames_used(planned, frames_used), top_level_group_names(project))


def move_into_group(project: QgsProject, layer: QgsRasterLayer, group: QgsLayerTreeGroup,
                    on_top: bool) -> None:
    """Move `layer`'s node (wherever Processing put it) into `group`, first or last."""
    root = project.layerTreeRoot()
    node = root.findLayer(layer.id())
    if node is None:
        group.insertLayer(0 if on_top else -1, layer)
        return
    if node.parent() is group:
        return
    clone = node.clone()
    group.insertChildNode(0 if on_top else len(group.children()), clone)
    node.parent().removeChildNode(node)
