from django.contrib import admin
from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("price/<str:sku>/", views.price, name="price"),
    path("orders/", views.orders, name="orders"),
    path("runs/<int:run_id>/", views.run_detail, name="run-detail"),
    path("slow/", views.slow_run, name="slow"),
    path("admin/", admin.site.urls),
    path("autotask/", include("autotask.urls")),  # the monitor, for staff
]
