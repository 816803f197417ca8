from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter(trailing_slash=False)
router.register("clusters", views.ClusterViewSet, basename="cluster")

urlpatterns = router.urls
