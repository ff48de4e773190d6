"""The pipeline service: pipelines and sales stages (销售阶段), opportunities (商机),
targets and forecast (目标/预测), the funnel (销售漏斗)."""
