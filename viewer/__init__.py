"""The OHIF web viewer: installed from its npm package, served at /viewer."""
