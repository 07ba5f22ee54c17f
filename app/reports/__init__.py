"""Reports: the campaign dashboard, trip costs (政府买单), charts and exports."""
