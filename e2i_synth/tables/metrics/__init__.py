"""What the market reports: business_metrics, monthly by brand, region and metric."""
