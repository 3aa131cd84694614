"""The job report (front.html), the dashboard's view of trials, front comparisons."""
