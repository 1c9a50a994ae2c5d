from django.apps import AppConfig


class DeployConfig(AppConfig):
    """Running the chat as several workers: `manage.py cluster`, the load
    balancer's configuration, and the container images' helpers."""

    name = "deploy"
    verbose_name = "Deployment"
