<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis maxScale="0" styleCategories="AllStyleCategories" hasScaleBasedVisibilityFlag="0" version="3.22.16-Białowieża" minScale="1e+08">
  <flags>
    <Identifiable>1</Identifiable>
    <Removable>1</Removable>
    <Searchable>1</Searchable>
    <Private>0</Private>
  </flags>
  <temporal mode="0" fetchMode="0" enabled="0">
    <fixedRange>
      <start></start>
      <end></end>
    </fixedRange>
  </temporal>
  <customproperties>
    <Option type="Map">
      <Option type="QString" value="Value" name="identify/format"/>
    </Option>
  </customproperties>
  <pipe-data-defined-properties>
    <Option type="Map">
      <Option type="QString" value="" name="name"/>
      <Option name="properties"/>
      <Option type="QString" value="collection" name="type"/>
    </Option>
  </pipe-data-defined-properties>
  <pipe>
    <provider>
      <resampling zoomedInResamplingMethod="nearestNeighbour" zoomedOutResamplingMethod="nearestNeighbour" enabled="false" maxOversampling="2"/>
    </provider>
    <rasterrenderer type="singlebandpseudocolor" opacity="0.6" nodataColor="" alphaBand="-1" classificationMax="1" classificationMin="0" band="1">
      <minMaxOrigin>
        <limits>CumulativeCut</limits>
        <extent>WholeRaster</extent>
        <statAccuracy>Estimated</statAccuracy>
        <cumulativeCutLower>0.02</cumulativeCutLower>
        <cumulativeCutUpper>0.98</cumulativeCutUpper>
        <stdDevFactor>2</stdDevFactor>
      </minMaxOrigin>
      <rastershader>
        <colorrampshader colorRampType="INTERPOLATED" minimumValue="0" clip="0" classificationMode="1" maximumValue="1" labelPrecision="6">
          <colorramp type="gradient" name="[source]">
            <Option type="Map">
              <Option type="QString" value="68,1,84,255" name="color1"/>
              <Option type="QString" value="253,231,37,255" name="color2"/>
              <Option type="QString" value="0" name="discrete"/>
              <Option type="QString" value="gradient" name="rampType"/>
              <Option type="QString" value="0.0196078;70,8,92,255:0.0392157;71,16,99,255:0.0588235;72,23,105,255:0.0784314;72,29,111,255:0.0980392;72,36,117,255:0.117647;71,42,122,255:0.137255;70,48,126,255:0.156863;69,55,129,255:0.176471;67,61,132,255:0.196078;65,66,135,255:0.215686;63,72,137,255:0.235294;61,78,138,255:0.254902;58,83,139,255:0.27451;56,89,140,255:0.294118;53,94,141,255:0.313725;51,99,141,255:0.333333;49,104,142,255:0.352941;46,109,142,255:0.372549;44,113,142,255:0.392157;42,118,142,255:0.411765;41,123,142,255:0.431373;39,128,142,255:0.45098;37,132,142,255:0.470588;35,137,142,255:0.490196;33,142,141,255:0.509804;32,146,140,255:0.529412;31,151,139,255:0.54902;30,156,137,255:0.568627;31,161,136,255:0.588235;33,165,133,255:0.607843;36,170,131,255:0.627451;40,174,128,255:0.647059;46,179,124,255:0.666667;53,183,121,255:0.686275;61,188,116,255:0.705882;70,192,111,255:0.72549;80,196,106,255:0.745098;90,200,100,255:0.764706;101,203,94,255:0.784314;112,207,87,255:0.803922;124,210,80,255:0.823529;137,213,72,255:0.843137;149,216,64,255:0.862745;162,218,55,255:0.882353;176,221,47,255:0.901961;189,223,38,255:0.921569;202,225,31,255:0.941176;216,226,25,255:0.960784;229,228,25,255:0.980392;241,229,29,255" name="stops"/>
            </Option>
            <prop k="color1" v="68,1,84,255"/>
            <prop k="color2" v="253,231,37,255"/>
            <prop k="discrete" v="0"/>
            <prop k="rampType" v="gradient"/>
            <prop k="stops" v="0.0196078;70,8,92,255:0.0392157;71,16,99,255:0.0588235;72,23,105,255:0.0784314;72,29,111,255:0.0980392;72,36,117,255:0.117647;71,42,122,255:0.137255;70,48,126,255:0.156863;69,55,129,255:0.176471;67,61,132,255:0.196078;65,66,135,255:0.215686;63,72,137,255:0.235294;61,78,138,255:0.254902;58,83,139,255:0.27451;56,89,140,255:0.294118;53,94,141,255:0.313725;51,99,141,255:0.333333;49,104,142,255:0.352941;46,109,142,255:0.372549;44,113,142,255:0.392157;42,118,142,255:0.411765;41,123,142,255:0.431373;39,128,142,255:0.45098;37,132,142,255:0.470588;35,137,142,255:0.490196;33,142,141,255:0.509804;32,146,140,255:0.529412;31,151,139,255:0.54902;30,156,137,255:0.568627;31,161,136,255:0.588235;33,165,133,255:0.607843;36,170,131,255:0.627451;40,174,128,255:0.647059;46,179,124,255:0.666667;53,183,121,255:0.686275;61,188,116,255:0.705882;70,192,111,255:0.72549;80,196,106,255:0.745098;90,200,100,255:0.764706;101,203,94,255:0.784314;112,207,87,255:0.803922;124,210,80,255:0.823529;137,213,72,255:0.843137;149,216,64,255:0.862745;162,218,55,255:0.882353;176,221,47,255:0.901961;189,223,38,255:0.921569;202,225,31,255:0.941176;216,226,25,255:0.960784;229,228,25,255:0.980392;241,229,29,255"/>
          </colorramp>
          <item alpha="0" value="0" color="#440154" label="0"/>
          <item alpha="5" value="0.0196078" color="#46085c" label="0.0196"/>
          <item alpha="10" value="0.0392157" color="#471063" label="0.0392"/>
          <item alpha="15" value="0.0588235" color="#481769" label="0.0588"/>
          <item alpha="20" value="0.0784314" color="#481d6f" label="0.0784"/>
          <item alpha="25" value="0.0980392" color="#482475" label="0.098"/>
          <item alpha="30" value="0.117647" color="#472a7a" label="0.118"/>
          <item alpha="35" value="0.137255" color="#46307e" label="0.137"/>
          <item alpha="40" value="0.156863" color="#453781" label="0.157"/>
          <item alpha="45" value="0.176471" color="#433d84" label="0.176"/>
          <item alpha="50" value="0.196078" color="#414287" label="0.196"/>
          <item alpha="55" value="0.215686" color="#3f4889" label="0.216"/>
          <item alpha="60" value="0.235294" color="#3d4e8a" label="0.235"/>
          <item alpha="65" value="0.254902" color="#3a538b" label="0.255"/>
          <item alpha="70" value="0.27451" color="#38598c" label="0.275"/>
          <item alpha="75" value="0.294118" color="#355e8d" label="0.294"/>
          <item alpha="80" value="0.313725" color="#33638d" label="0.314"/>
          <item alpha="85" value="0.333333" color="#31688e" label="0.333"/>
          <item alpha="90" value="0.352941" color="#2e6d8e" label="0.353"/>
          <item alpha="95" value="0.372549" color="#2c718e" label="0.373"/>
          <item alpha="100" value="0.392157" color="#2a768e" label="0.392"/>
          <item alpha="105" value="0.411765" color="#297b8e" label="0.412"/>
          <item alpha="110" value="0.431373" color="#27808e" label="0.431"/>
          <item alpha="115" value="0.45098" color="#25848e" label="0.451"/>
          <item alpha="120" value="0.470588" color="#23898e" label="0.471"/>
          <item alpha="125" value="0.490196" color="#218e8d" label="0.49"/>
          <item alpha="130" value="0.509804" color="#20928c" label="0.51"/>
          <item alpha="135" value="0.529412" color="#1f978b" label="0.529"/>
          <item alpha="140" value="0.54902" color="#1e9c89" label="0.549"/>
          <item alpha="145" value="0.568627" color="#1fa188" label="0.569"/>
          <item alpha="150" value="0.588235" color="#21a585" label="0.588"/>
          <item alpha="155" value="0.607843" color="#24aa83" label="0.608"/>
          <item alpha="160" value="0.627451" color="#28ae80" label="0.627"/>
          <item alpha="165" value="0.647059" color="#2eb37c" label="0.647"/>
          <item alpha="170" value="0.666667" color="#35b779" label="0.667"/>
          <item alpha="175" value="0.686275" color="#3dbc74" label="0.686"/>
          <item alpha="180" value="0.705882" color="#46c06f" label="0.706"/>
          <item alpha="185" value="0.72549" color="#50c46a" label="0.725"/>
          <item alpha="190" value="0.745098" color="#5ac864" label="0.745"/>
          <item alpha="195" value="0.764706" color="#65cb5e" label="0.765"/>
          <item alpha="200" value="0.784314" color="#70cf57" label="0.784"/>
          <item alpha="205" value="0.803922" color="#7cd250" label="0.804"/>
          <item alpha="210" value="0.823529" color="#89d548" label="0.824"/>
          <item alpha="215" value="0.843137" color="#95d840" label="0.843"/>
          <item alpha="220" value="0.862745" color="#a2da37" label="0.863"/>
          <item alpha="225" value="0.882353" color="#b0dd2f" label="0.882"/>
          <item alpha="230" value="0.901961" color="#bddf26" label="0.902"/>
          <item alpha="235" value="0.921569" color="#cae11f" label="0.922"/>
          <item alpha="240" value="0.941176" color="#d8e219" label="0.941"/>
          <item alpha="245" value="0.960784" color="#e5e419" label="0.961"/>
          <item alpha="250" value="0.980392" color="#f1e51d" label="0.98"/>
          <item alpha="255" value="1" color="#fde725" label="1"/>
          <rampLegendSettings suffix="" direction="0" minimumLabel="" prefix="" useContinuousLegend="1" orientation="2" maximumLabel="">
            <numericFormat id="basic">
              <Option type="Map">
                <Option type="QChar" value="" name="decimal_separator"/>
                <Option type="int" value="6" name="decimals"/>
                <Option type="int" value="0" name="rounding_type"/>
                <Option type="bool" value="false" name="show_plus"/>
                <Option type="bool" value="true" name="show_thousand_separator"/>
                <Option type="bool" value="false" name="show_trailing_zeros"/>
                <Option type="QChar" value="" name="thousand_separator"/>
              </Option>
            </numericFormat>
          </rampLegendSettings>
        </colorrampshader>
      </rastershader>
    </rasterrenderer>
    <brightnesscontrast brightness="0" gamma="1" contrast="0"/>
    <huesaturation invertColors="0" colorizeStrength="100" saturation="0" colorizeOn="0" grayscaleMode="0" colorizeGreen="128" colorizeBlue="128" colorizeRed="255"/>
    <rasterresampler maxOversampling="2"/>
    <resamplingStage>resamplingFilter</resamplingStage>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
