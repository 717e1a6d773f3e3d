"""HTTP routes that are not DICOMweb: health and, later, the admin API."""
